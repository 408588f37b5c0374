package kubeadm

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// CertsSecret is the Secret in kube-system that joining control-plane nodes
// download the cluster's CA files from (kubeadm's "kubeadm-certs").
const CertsSecret = "kubeadm-certs"

// UploadCerts stores the control-plane files (the three CAs and the
// service-account key pair) in the kubeadm-certs Secret, each encrypted with
// the certificate key (AES-256-GCM, as kubeadm's upload-certs does), so a
// control-plane node joining with that key downloads them. kubeadm init
// uploads them too, but its Secret is deleted after two hours; calling this
// before each control-plane join makes a late join work.
//
// The Secret is owned by the bootstrap-token Secret of ownerTokenID (the
// joining node's token) and by the tokens of earlier uploads still alive:
// when the last of them is revoked after its join, or removed by the token
// cleaner on expiry, the garbage collector deletes the uploaded CA keys. The Role and RoleBinding that let the node's
// token group read the Secret are created when missing.
func UploadCerts(ctx context.Context, c kubernetes.Interface, p *PKI, ownerTokenID string) error {
	key, err := hex.DecodeString(p.CertificateKey())
	if err != nil {
		return fmt.Errorf("upload control-plane certificates: certificate key: %w", err)
	}
	files, err := p.ControlPlaneFiles()
	if err != nil {
		return fmt.Errorf("upload control-plane certificates: %w", err)
	}
	data := map[string][]byte{}
	for _, f := range files {
		enc, err := encrypt(f.Data, key)
		if err != nil {
			return fmt.Errorf("upload control-plane certificates: encrypt %s: %w", f.Path, err)
		}
		data[strings.ReplaceAll(f.Path, "/", "-")] = enc
	}
	owner, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstraputil.BootstrapTokenSecretName(ownerTokenID), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("upload control-plane certificates: owner token %s: %w", ownerTokenID, err)
	}
	ref := metav1.OwnerReference{APIVersion: "v1", Kind: "Secret", Name: owner.Name, UID: owner.UID}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            CertsSecret,
			Namespace:       metav1.NamespaceSystem,
			OwnerReferences: []metav1.OwnerReference{ref},
		},
		Data: data,
	}
	secrets := c.CoreV1().Secrets(metav1.NamespaceSystem)
	// Control-plane nodes are issued side by side: another upload may
	// create or update the Secret between this Get and the write. Start
	// again from a fresh Get then (a lost create race is a conflict too).
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		want := secret.DeepCopy()
		cur, err := secrets.Get(ctx, CertsSecret, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err := secrets.Create(ctx, want, metav1.CreateOptions{FieldManager: FieldManager})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("secrets"), CertsSecret, err)
			}
			if err != nil {
				return fmt.Errorf("create secret %s: %w", CertsSecret, err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("get secret %s: %w", CertsSecret, err)
		}
		// The Secret stays until the last of the joining nodes' tokens is
		// gone (the garbage collector deletes a dependent once all its
		// owners are gone). Owners from kubeadm's own upload are dropped:
		// theirs is a controller reference and there may only be one.
		want.ResourceVersion = cur.ResourceVersion
		for _, r := range cur.OwnerReferences {
			if r.Name != ref.Name && r.Kind == "Secret" && (r.Controller == nil || !*r.Controller) {
				want.OwnerReferences = append(want.OwnerReferences, r)
			}
		}
		_, err = secrets.Update(ctx, want, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
	if err != nil {
		return fmt.Errorf("upload control-plane certificates: %w", err)
	}
	return ensureCertsRBAC(ctx, c)
}

// ensureCertsRBAC lets bootstrap tokens of the node group read kubeadm-certs,
// as kubeadm init --upload-certs does.
func ensureCertsRBAC(ctx context.Context, c kubernetes.Interface) error {
	const name = "kubeadm:" + CertsSecret
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem},
		Rules:      []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{CertsSecret}}},
	}
	if _, err := c.RbacV1().Roles(metav1.NamespaceSystem).Create(ctx, role, metav1.CreateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("upload control-plane certificates: create role %s: %w", name, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: NodeTokenGroup}},
	}
	if _, err := c.RbacV1().RoleBindings(metav1.NamespaceSystem).Create(ctx, rb, metav1.CreateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("upload control-plane certificates: create role binding %s: %w", name, err)
	}
	return nil
}

// encrypt seals data with AES-GCM under key, the nonce in front (the
// format kubeadm's download-certs decrypts).
func encrypt(data, key []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, data, nil), nil
}
