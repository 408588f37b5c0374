package dra

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

// CheckpointFile is the name of the checkpoint of prepared claims in the
// state directory.
const CheckpointFile = "checkpoint.json"

// checkpointVersion is the version of the checkpoint's format.
const checkpointVersion = 1

// checkpoint is the file that records prepared claims. It is the driver's
// own memory of what it handed out: the kubelet unprepares by UID, name and
// namespace only, possibly after the claim is gone from the API, after a
// plugin restart or after a reboot.
type checkpoint struct {
	// Version is checkpointVersion.
	Version int `json:"version"`
	// Checksum is the hex SHA-256 of the JSON of Claims.
	Checksum string `json:"checksum"`
	// Claims are the prepared claims by UID.
	Claims map[string]preparedClaim `json:"claims"`
}

// preparedClaim is one prepared claim.
type preparedClaim struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Devices   []preparedDevice `json:"devices"`
	// Spec is the claim's CDI spec, written again at start when the file
	// is missing (a CDI directory on tmpfs after a reboot) or damaged (the
	// spec is not synced, so a power loss can leave it empty).
	Spec *cdispec.Spec `json:"cdiSpec,omitempty"`
}

// preparedDevice is one device of a prepared claim.
type preparedDevice struct {
	// Requests are the claim's requests this device serves.
	Requests []string `json:"requests"`
	// Pool and Device name the device in the ResourceSlice.
	Pool   string `json:"pool"`
	Device string `json:"device"`
	// DeviceID is the pkg/devices ID (GPU UUID, mlx5_0, FPGA address).
	DeviceID string `json:"deviceID"`
	// CDIDeviceIDs are the fully qualified CDI names handed to the kubelet.
	CDIDeviceIDs []string `json:"cdiDeviceIDs"`
}

// loadCheckpoint reads path; a missing file is an empty checkpoint. A file
// that cannot be parsed or whose checksum does not match is an error: the
// driver must not forget prepared claims silently.
func loadCheckpoint(path string) (map[string]preparedClaim, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]preparedClaim{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var cp struct {
		Version  int             `json:"version"`
		Checksum string          `json:"checksum"`
		Claims   json.RawMessage `json:"claims"`
	}
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("checkpoint %s is not valid JSON (%w); move it aside to start without the claims it records", path, err)
	}
	if cp.Version != checkpointVersion {
		return nil, fmt.Errorf("checkpoint %s has version %d, this driver reads %d", path, cp.Version, checkpointVersion)
	}
	claims := map[string]preparedClaim{}
	if len(cp.Claims) > 0 && string(cp.Claims) != "null" {
		if err := json.Unmarshal(cp.Claims, &claims); err != nil {
			return nil, fmt.Errorf("checkpoint %s: claims: %w", path, err)
		}
	}
	sum, err := claimsChecksum(claims)
	if err != nil {
		return nil, err
	}
	if sum != cp.Checksum {
		return nil, fmt.Errorf("checkpoint %s is corrupt (checksum %s, content %s); move it aside to start without the claims it records", path, cp.Checksum, sum)
	}
	return claims, nil
}

func claimsChecksum(claims map[string]preparedClaim) (string, error) {
	data, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode checkpoint claims: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// saveCheckpoint writes claims to path atomically and durably: a temporary
// file in the same directory, synced, renamed over path, and the directory
// synced, so that after a crash or power loss the file is the old or the new
// version, never a mix.
func saveCheckpoint(path string, claims map[string]preparedClaim) error {
	sum, err := claimsChecksum(claims)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(checkpoint{Version: checkpointVersion, Checksum: sum, Claims: claims}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if err := writeFileDurably(path, data, 0o600); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

// writeFileDurably writes data to path through a synced temporary file and
// a rename, then syncs the directory.
func writeFileDurably(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
