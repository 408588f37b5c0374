package kubeadm

import encpem "encoding/pem"

func pemBlock(typ string, der []byte) []byte {
	return encpem.EncodeToMemory(&encpem.Block{Type: typ, Bytes: der})
}
