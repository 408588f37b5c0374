package bootiso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

const sector = 2048

// isoFile is one file of the image's root directory.
type isoFile struct {
	name string // ISO 9660 name without ";1", such as "ISOLINUX.BIN"
	data []byte
	lba  uint32 // assigned by writeISO
}

// isoImage is what writeISO writes: a flat root directory and an El Torito
// no-emulation boot entry for one of its files.
type isoImage struct {
	volumeID string
	files    []*isoFile
	// boot names the file the BIOS loads (ISOLINUX.BIN); it gets a boot
	// information table, as mkisofs -boot-info-table writes it.
	boot string
	// modified is the date recorded on the volume and its files.
	modified time.Time
}

func bothEndian32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:4], v)
	binary.BigEndian.PutUint32(b[4:8], v)
}

func bothEndian16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b[0:2], v)
	binary.BigEndian.PutUint16(b[2:4], v)
}

func sectors(n int) uint32 { return uint32((n + sector - 1) / sector) }

// padded returns s in a field of n bytes padded with spaces.
func padded(s string, n int) []byte {
	b := bytes.Repeat([]byte{' '}, n)
	copy(b, s)
	return b
}

func dirDate(t time.Time) []byte {
	t = t.UTC()
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

func volDate(t time.Time) []byte {
	b := []byte(t.UTC().Format("20060102150405") + "00")
	return append(b, 0)
}

// dirRecord is an ISO 9660 directory record.
func dirRecord(name []byte, lba, size uint32, dir bool, t time.Time) []byte {
	n := 33 + len(name)
	if n%2 == 1 {
		n++
	}
	r := make([]byte, n)
	r[0] = byte(n)
	bothEndian32(r[2:10], lba)
	bothEndian32(r[10:18], size)
	copy(r[18:25], dirDate(t))
	if dir {
		r[25] = 2
	}
	bothEndian16(r[28:32], 1)
	r[32] = byte(len(name))
	copy(r[33:], name)
	return r
}

// validName reports whether name is a d-character 8.3 name.
func validName(name string) bool {
	base, ext, _ := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 {
		return false
	}
	for _, c := range base + ext {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// writeISO writes img as an ISO 9660 (level 1) image with an El Torito
// boot catalog. Layout: system area (16 sectors), primary volume
// descriptor, boot record, terminator, boot catalog, root directory, the
// two path tables, then the files in name order.
func writeISO(w io.Writer, img isoImage) error {
	files := slices.Clone(img.files)
	slices.SortFunc(files, func(a, b *isoFile) int { return strings.Compare(a.name, b.name) })
	const (
		lbaPVD, lbaBootRecord, lbaTerm, lbaCatalog, lbaRoot, lbaPathL, lbaPathM = 16, 17, 18, 19, 20, 21, 22
		firstFile                                                               = 23
	)
	var root bytes.Buffer
	root.Write(dirRecord([]byte{0}, lbaRoot, sector, true, img.modified))
	root.Write(dirRecord([]byte{1}, lbaRoot, sector, true, img.modified))
	next := uint32(firstFile)
	var boot *isoFile
	for _, f := range files {
		if !validName(f.name) {
			return fmt.Errorf("write iso: file name %q is not an 8.3 ISO 9660 name", f.name)
		}
		f.lba = next
		next += max(sectors(len(f.data)), 1)
		root.Write(dirRecord([]byte(f.name+";1"), f.lba, uint32(len(f.data)), false, img.modified))
		if f.name == img.boot {
			boot = f
		}
	}
	if root.Len() > sector {
		return errors.New("write iso: too many files for a one-sector root directory")
	}
	if boot == nil {
		return fmt.Errorf("write iso: boot file %s is not in the image", img.boot)
	}
	total := next

	pvd := make([]byte, sector)
	pvd[0] = 1
	copy(pvd[1:6], "CD001")
	pvd[6] = 1
	copy(pvd[8:40], padded("", 32))
	copy(pvd[40:72], padded(img.volumeID, 32))
	bothEndian32(pvd[80:88], total)
	bothEndian16(pvd[120:124], 1)
	bothEndian16(pvd[124:128], 1)
	bothEndian16(pvd[128:132], sector)
	bothEndian32(pvd[132:140], 10)
	binary.LittleEndian.PutUint32(pvd[140:144], lbaPathL)
	binary.BigEndian.PutUint32(pvd[148:152], lbaPathM)
	copy(pvd[156:190], dirRecord([]byte{0}, lbaRoot, sector, true, img.modified))
	copy(pvd[190:702], padded("", 512))
	copy(pvd[574:702], padded("SLIPWAY BOOTISO", 128))
	copy(pvd[702:813], padded("", 111))
	for _, off := range []int{813, 830} {
		copy(pvd[off:off+17], volDate(img.modified))
	}
	for _, off := range []int{847, 864} {
		copy(pvd[off:off+17], append([]byte("0000000000000000"), 0))
	}
	pvd[881] = 1

	br := make([]byte, sector)
	copy(br[1:6], "CD001")
	br[6] = 1
	copy(br[7:39], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(br[71:75], lbaCatalog)

	term := make([]byte, sector)
	term[0] = 255
	copy(term[1:6], "CD001")
	term[6] = 1

	catalog := make([]byte, sector)
	catalog[0] = 1 // validation entry, platform x86
	copy(catalog[4:28], "SLIPWAY")
	catalog[30], catalog[31] = 0x55, 0xAA
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(catalog[i:])
	}
	binary.LittleEndian.PutUint16(catalog[28:30], -sum)
	entry := catalog[32:64]
	entry[0] = 0x88 // bootable, no emulation, default load segment
	binary.LittleEndian.PutUint16(entry[6:8], 4)
	binary.LittleEndian.PutUint32(entry[8:12], boot.lba)

	pathL, pathM := make([]byte, sector), make([]byte, sector)
	for _, p := range [][]byte{pathL, pathM} {
		p[0] = 1
		p[8] = 0
	}
	binary.LittleEndian.PutUint32(pathL[2:6], lbaRoot)
	binary.LittleEndian.PutUint16(pathL[6:8], 1)
	binary.BigEndian.PutUint32(pathM[2:6], lbaRoot)
	binary.BigEndian.PutUint16(pathM[6:8], 1)

	bootData := slices.Clone(boot.data)
	if err := bootInfoTable(bootData, lbaPVD, boot.lba); err != nil {
		return err
	}

	out := make([]byte, 0, int(total)*sector)
	out = append(out, make([]byte, 16*sector)...)
	rootSector := make([]byte, sector)
	copy(rootSector, root.Bytes())
	for _, s := range [][]byte{pvd, br, term, catalog, rootSector, pathL, pathM} {
		out = append(out, s...)
	}
	for _, f := range files {
		data := f.data
		if f == boot {
			data = bootData
		}
		chunk := make([]byte, int(max(sectors(len(data)), 1))*sector)
		copy(chunk, data)
		out = append(out, chunk...)
	}
	_, err := w.Write(out)
	return err
}

// bootInfoTable fills the 56-byte boot information table at offset 8 of an
// El Torito boot file, which ISOLINUX needs to find itself on the CD: the
// LBA of the primary volume descriptor, the file's LBA and length, and the
// 32-bit sum of the file from offset 64.
func bootInfoTable(data []byte, pvd, lba uint32) error {
	if len(data) < 64 || len(data)%4 != 0 {
		return fmt.Errorf("write iso: boot file of %d bytes is too short or not a multiple of 4", len(data))
	}
	var sum uint32
	for i := 64; i < len(data); i += 4 {
		sum += binary.LittleEndian.Uint32(data[i:])
	}
	binary.LittleEndian.PutUint32(data[8:], pvd)
	binary.LittleEndian.PutUint32(data[12:], lba)
	binary.LittleEndian.PutUint32(data[16:], uint32(len(data)))
	binary.LittleEndian.PutUint32(data[20:], sum)
	clear(data[24:64])
	return nil
}

// readRootFiles reads the files of an ISO 9660 image's root directory,
// keyed by name without the ";1" version.
func readRootFiles(r io.ReaderAt) (map[string][]byte, error) {
	pvd := make([]byte, sector)
	if _, err := r.ReadAt(pvd, 16*sector); err != nil {
		return nil, fmt.Errorf("read primary volume descriptor: %w", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return nil, errors.New("not an ISO 9660 image (no primary volume descriptor at sector 16)")
	}
	rootLBA := binary.LittleEndian.Uint32(pvd[156+2:])
	rootLen := binary.LittleEndian.Uint32(pvd[156+10:])
	if rootLen > 1<<20 {
		return nil, fmt.Errorf("root directory of %d bytes is too large", rootLen)
	}
	dir := make([]byte, rootLen)
	if _, err := r.ReadAt(dir, int64(rootLBA)*sector); err != nil {
		return nil, fmt.Errorf("read root directory: %w", err)
	}
	files := map[string][]byte{}
	for i := 0; i < len(dir); {
		n := int(dir[i])
		if n == 0 {
			i = (i/sector + 1) * sector
			continue
		}
		if i+n > len(dir) || n < 34 {
			return nil, errors.New("malformed directory record")
		}
		rec := dir[i : i+n]
		i += n
		nameLen := int(rec[32])
		if 33+nameLen > len(rec) || rec[25]&2 != 0 {
			continue
		}
		name, _, _ := strings.Cut(string(rec[33:33+nameLen]), ";")
		lba := binary.LittleEndian.Uint32(rec[2:])
		size := binary.LittleEndian.Uint32(rec[10:])
		if size > 64<<20 {
			return nil, fmt.Errorf("file %s of %d bytes is too large", name, size)
		}
		data := make([]byte, size)
		if _, err := r.ReadAt(data, int64(lba)*sector); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		files[strings.ToUpper(name)] = data
	}
	return files, nil
}
