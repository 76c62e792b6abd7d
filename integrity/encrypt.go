package integrity

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/veraison/go-cose"
)

// COSE_Encrypt0 (RFC 9052 section 5.2) with A256GCM (RFC 9053 section
// 4.1), written and read in one fixed shape:
//
//	16([ bstr .cbor {1: 3, 4: kid}, {5: iv(12 bytes)}, ciphertext||tag ])
//
// The additional data is the Enc_structure ["Encrypt0", protected,
// external_aad], where external_aad binds the topic as for signatures.

const (
	tagEncrypt0 = 16
	gcmNonce    = 12
	gcmTag      = 16
)

// encrypt0 returns the COSE_Encrypt0 of plaintext under key k.
func encrypt0(k *Key, aad, plaintext []byte) ([]byte, error) {
	if k.aead == nil {
		return nil, fmt.Errorf("%w: key %q is not a content-encryption key", ErrConfig, k.id)
	}
	prot := encProtected(k.id)
	iv := make([]byte, gcmNonce)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 32+len(prot)+len(plaintext)+gcmTag)
	out = appendHead(out, majTag, tagEncrypt0)
	out = appendHead(out, majArray, 3)
	out = appendBytes(out, prot)
	out = appendHead(out, majMap, 1)
	out = appendInt(out, cose.HeaderLabelIV)
	out = appendBytes(out, iv)
	out = appendHead(out, majBytes, uint64(len(plaintext)+gcmTag))
	out = k.aead.Seal(out, iv, plaintext, encStructure(prot, aad))
	return out, nil
}

func encProtected(kid string) []byte {
	p := make([]byte, 0, 8+len(kid))
	p = appendHead(p, majMap, 2)
	p = appendInt(p, cose.HeaderLabelAlgorithm)
	p = appendInt(p, int64(A256GCM.coseAlg()))
	p = appendInt(p, cose.HeaderLabelKeyID)
	return appendBytes(p, []byte(kid))
}

// encStructure is the CBOR Enc_structure used as the AEAD's additional
// data.
func encStructure(prot, aad []byte) []byte {
	b := make([]byte, 0, 24+len(prot)+len(aad))
	b = appendHead(b, majArray, 3)
	b = appendText(b, "Encrypt0")
	b = appendBytes(b, prot)
	return appendBytes(b, aad)
}

var errEncShape = errors.New("not a COSE_Encrypt0 of this package's shape")

// parseEncrypt0 splits a COSE_Encrypt0 into its protected header bytes,
// key ID, IV and ciphertext (slices of b).
func parseEncrypt0(b []byte) (prot []byte, kid []byte, iv, ct []byte, err error) {
	maj, v, rest, err := readHead(b)
	if err != nil || maj != majTag || v != tagEncrypt0 {
		return nil, nil, nil, nil, errEncShape
	}
	if maj, v, rest, err = readHead(rest); err != nil || maj != majArray || v != 3 {
		return nil, nil, nil, nil, errEncShape
	}
	if prot, rest, err = readBytes(rest, 16+MaxKeyIDLen); err != nil {
		return nil, nil, nil, nil, errEncShape
	}
	// protected: {1: 3, 4: kid}
	p := prot
	if maj, v, p, err = readHead(p); err != nil || maj != majMap || v != 2 {
		return nil, nil, nil, nil, errEncShape
	}
	var label, alg int64
	if label, p, err = readInt(p); err != nil || label != cose.HeaderLabelAlgorithm {
		return nil, nil, nil, nil, errEncShape
	}
	if alg, p, err = readInt(p); err != nil || alg != int64(A256GCM.coseAlg()) {
		return nil, nil, nil, nil, errEncShape
	}
	if label, p, err = readInt(p); err != nil || label != cose.HeaderLabelKeyID {
		return nil, nil, nil, nil, errEncShape
	}
	if kid, p, err = readBytes(p, MaxKeyIDLen); err != nil || len(kid) == 0 || len(p) != 0 {
		return nil, nil, nil, nil, errEncShape
	}
	// unprotected: {5: iv}
	if maj, v, rest, err = readHead(rest); err != nil || maj != majMap || v != 1 {
		return nil, nil, nil, nil, errEncShape
	}
	if label, rest, err = readInt(rest); err != nil || label != cose.HeaderLabelIV {
		return nil, nil, nil, nil, errEncShape
	}
	if iv, rest, err = readBytes(rest, gcmNonce); err != nil || len(iv) != gcmNonce {
		return nil, nil, nil, nil, errEncShape
	}
	if ct, rest, err = readBytes(rest, len(rest)); err != nil || len(ct) < gcmTag || len(rest) != 0 {
		return nil, nil, nil, nil, errEncShape
	}
	return prot, kid, iv, ct, nil
}

// decrypt0 opens a COSE_Encrypt0 with the key it names, found in keys.
func decrypt0(ctx context.Context, keys KeySource, aad, b []byte) (plaintext []byte, kid string, err error) {
	prot, rawKID, iv, ct, err := parseEncrypt0(b)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	kid = string(rawKID)
	k, err := keys.Key(ctx, kid)
	if err != nil {
		return nil, kid, fmt.Errorf("%w: content key %q: %w", ErrDecrypt, kid, err)
	}
	if k.aead == nil {
		return nil, kid, fmt.Errorf("%w: key %q is not a content-encryption key", ErrDecrypt, kid)
	}
	pt, err := k.aead.Open(make([]byte, 0, len(ct)-gcmTag), iv, ct, encStructure(prot, aad))
	if err != nil {
		return nil, kid, fmt.Errorf("%w: content key %q: authentication failed", ErrDecrypt, kid)
	}
	return pt, kid, nil
}
