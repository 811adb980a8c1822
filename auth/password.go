package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Params are the argon2id cost parameters (RFC 9106). They are written
// into every encoded hash, so changing DefaultParams affects new hashes
// only and old ones keep verifying.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultParams are the parameters of HashPassword: 19 MiB, 2 passes, one
// lane, the first recommendation of the OWASP password storage cheat sheet
// (RFC 9106 section 4 gives 64 MiB as its second choice). About 30-60 ms
// on the 2-core test machines.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// TestParams are cheap parameters for tests that log in many times. They
// give no protection against offline guessing: never use them in serve.
var TestParams = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// Limits on parameters read from a stored hash, so that a corrupt or
// hostile hash string cannot make a login allocate gigabytes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
	maxPassword  = 4096 // bytes; longer passwords are refused
)

// ErrEmptyPassword is returned by HashPassword for "".
var ErrEmptyPassword = errors.New("the password is empty")

// ErrBadHash is returned by CheckPassword for a string that is not an
// argon2id hash this package can verify.
var ErrBadHash = errors.New("not a valid argon2id hash")

// HashPassword returns an encoded argon2id hash of password with
// DefaultParams, in the PHC string format:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (unpadded standard base64).
func HashPassword(password string) (string, error) {
	return HashPasswordParams(password, DefaultParams)
}

// HashPasswordParams is HashPassword with explicit parameters.
func HashPasswordParams(password string, p Params) (string, error) {
	if password == "" {
		return "", ErrEmptyPassword
	}
	if len(password) > maxPassword {
		return "", fmt.Errorf("the password is longer than %d bytes", maxPassword)
	}
	if err := p.check(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := idKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return encodeHash(p, salt, key), nil
}

// CheckPassword reports whether password matches an encoded hash. The
// comparison takes constant time; the cost is the one named in the hash.
// An error means the hash itself is unusable, not that the password is
// wrong.
func CheckPassword(encoded, password string) (bool, error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	if len(password) > maxPassword {
		// Still spend the same time as a real check.
		password = password[:maxPassword]
		idKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
		return false, nil
	}
	got := idKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// ParseParams returns the parameters of an encoded hash.
func ParseParams(encoded string) (Params, error) {
	p, _, _, err := decodeHash(encoded)
	return p, err
}

func (p Params) check() error {
	switch {
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemoryKiB:
		return fmt.Errorf("%w: memory %d KiB out of range", ErrBadHash, p.Memory)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("%w: time %d out of range", ErrBadHash, p.Time)
	case p.Threads < 1:
		return fmt.Errorf("%w: parallelism must be at least 1", ErrBadHash)
	case p.SaltLen < 8 || p.SaltLen > 64:
		return fmt.Errorf("%w: salt of %d bytes", ErrBadHash, p.SaltLen)
	case p.KeyLen < 16 || p.KeyLen > 128:
		return fmt.Errorf("%w: key of %d bytes", ErrBadHash, p.KeyLen)
	}
	return nil
}

var b64 = base64.RawStdEncoding

func encodeHash(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// decodeHash parses the PHC string format. The version field is required
// and must be 19 (0x13), the only argon2 version x/crypto implements.
func decodeHash(s string) (p Params, salt, key []byte, err error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return p, nil, nil, ErrBadHash
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: unsupported version %q", ErrBadHash, f[2])
	}
	if p, err = parseParamList(f[3]); err != nil {
		return p, nil, nil, err
	}
	if salt, err = b64.Strict().DecodeString(f[4]); err != nil {
		return p, nil, nil, fmt.Errorf("%w: salt is not base64", ErrBadHash)
	}
	if key, err = b64.Strict().DecodeString(f[5]); err != nil {
		return p, nil, nil, fmt.Errorf("%w: hash is not base64", ErrBadHash)
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.check(); err != nil {
		return p, nil, nil, err
	}
	return p, salt, key, nil
}

// parseParamList reads "m=...,t=...,p=..." in that order (the PHC format
// fixes the order for argon2).
func parseParamList(s string) (Params, error) {
	var p Params
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return p, fmt.Errorf("%w: parameters %q", ErrBadHash, s)
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(parts[i], name)
		if !ok {
			return p, fmt.Errorf("%w: parameters %q", ErrBadHash, s)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, fmt.Errorf("%w: parameter %q", ErrBadHash, parts[i])
		}
		vals[i] = n
	}
	if vals[2] > 255 {
		return p, fmt.Errorf("%w: parallelism %d", ErrBadHash, vals[2])
	}
	p.Memory, p.Time, p.Threads = uint32(vals[0]), uint32(vals[1]), uint8(vals[2])
	return p, nil
}

// hashSlots bounds how many argon2id hashes run at once. Each takes its
// memory parameter (19 MiB by default) for as long as it runs: a storm of
// logins, failed ones included (an unknown user costs the same), took
// the server from 137 MB to 2 GB, and the heap stayed that large. The
// others wait; they could not run sooner on the machine's cores anyway.
var hashSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// hashing and hashPeak count the hashes running, and the most at once
// (for tests).
var hashing, hashPeak atomic.Int64

func idKey(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	n := hashing.Add(1)
	defer hashing.Add(-1)
	for {
		peak := hashPeak.Load()
		if n <= peak || hashPeak.CompareAndSwap(peak, n) {
			break
		}
	}
	return argon2.IDKey(password, salt, time, memory, threads, keyLen)
}
