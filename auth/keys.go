package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// HMACSecretFromFile reads an HMAC secret from a file, without a trailing
// newline. The file should be readable by the broker only.
func HMACSecretFromFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: hmac secret: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < minHMACSecret {
		return nil, fmt.Errorf("%w: hmac secret in %s is shorter than %d bytes", ErrConfig, path, minHMACSecret)
	}
	return b, nil
}

// HMACSecretFromEnv reads an HMAC secret from the environment variable
// name.
func HMACSecretFromEnv(name string) ([]byte, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return nil, fmt.Errorf("%w: environment variable %s is not set", ErrConfig, name)
	}
	if len(v) < minHMACSecret {
		return nil, fmt.Errorf("%w: hmac secret in %s is shorter than %d bytes", ErrConfig, name, minHMACSecret)
	}
	return []byte(v), nil
}

// ParsePublicKeysPEM returns the RSA, ECDSA and Ed25519 public keys in PEM
// data: "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY" (PKCS #1) and "CERTIFICATE"
// blocks (the certificate's key). A private key block is an error: give the
// verifier only public keys.
func ParsePublicKeysPEM(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		var k any
		var err error
		switch b.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				k = c.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: PEM block %q is a private key; give the public key", ErrConfig, b.Type)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: PEM block %q: %w", ErrConfig, b.Type, err)
		}
		switch k.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("%w: unsupported public key type %T", ErrConfig, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no public key in PEM data", ErrConfig)
	}
	return keys, nil
}

// LoadPublicKeysPEM reads [ParsePublicKeysPEM] keys from a file.
func LoadPublicKeysPEM(path string) ([]crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: public keys: %w", err)
	}
	return ParsePublicKeysPEM(b)
}
