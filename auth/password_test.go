package auth

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestHashRoundTrip(t *testing.T) {
	h, err := HashPasswordParams("correct horse", TestParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("encoding %q", h)
	}
	ok, err := CheckPassword(h, "correct horse")
	if err != nil || !ok {
		t.Fatalf("right password: ok=%v err=%v", ok, err)
	}
	for _, wrong := range []string{"correct horsE", "", "correct horse ", strings.Repeat("x", 5000)} {
		ok, err = CheckPassword(h, wrong)
		if err != nil || ok {
			t.Fatalf("wrong password %.20q: ok=%v err=%v", wrong, ok, err)
		}
	}
	h2, _ := HashPasswordParams("correct horse", TestParams)
	if h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

func TestDefaultParams(t *testing.T) {
	h, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseParams(h)
	if err != nil {
		t.Fatal(err)
	}
	if p != DefaultParams {
		t.Fatalf("params %+v, want %+v", p, DefaultParams)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("encoding %q", h)
	}
}

func TestCheckHonoursParams(t *testing.T) {
	p := Params{Memory: 256, Time: 3, Threads: 2, SaltLen: 8, KeyLen: 16}
	h, err := HashPasswordParams("pw", p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseParams(h)
	if err != nil || got != p {
		t.Fatalf("ParseParams = %+v, %v; want %+v", got, err, p)
	}
	if ok, err := CheckPassword(h, "pw"); !ok || err != nil {
		t.Fatalf("check with non-default params: %v %v", ok, err)
	}
}

// A hash made elsewhere (the argon2 reference CLI / PHC test vectors use
// this format): password "password", salt "somesalt".
func TestCheckKnownVector(t *testing.T) {
	const h = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	ok, err := CheckPassword(h, "password")
	if err != nil || !ok {
		t.Fatalf("reference vector: ok=%v err=%v", ok, err)
	}
}

func TestHashRefusesEmpty(t *testing.T) {
	if _, err := HashPassword(""); !errors.Is(err, ErrEmptyPassword) {
		t.Fatalf("empty password: %v", err)
	}
	if _, err := HashPasswordParams(strings.Repeat("a", maxPassword+1), TestParams); err == nil {
		t.Fatal("over-long password accepted")
	}
	if _, err := HashPasswordParams("pw", Params{Memory: 1 << 30, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}); err == nil {
		t.Fatal("absurd memory accepted")
	}
}

func TestBadEncodings(t *testing.T) {
	good, _ := HashPasswordParams("pw", TestParams)
	f := strings.Split(good, "$")
	salt, key := f[4], f[5]
	bad := []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1,x=2$" + salt + "$" + key,
		"$argon2id$v=19$m=-1,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=256$" + salt + "$" + key,
		"$argon2id$v=19$m=4294967295,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "=$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$!!!!$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key,     // 4-byte salt
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$a2V5", // 3-byte key
		"x$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key,
	}
	for _, h := range bad {
		ok, err := CheckPassword(h, "pw")
		if ok || !errors.Is(err, ErrBadHash) {
			t.Errorf("CheckPassword(%q) = %v, %v; want ErrBadHash", h, ok, err)
		}
	}
}

// FuzzCheckPassword feeds arbitrary hash strings to the decoder: never a
// panic, and nothing but ErrBadHash for what does not parse. (Parameters
// are bounded, so a hostile hash cannot cost more than maxMemoryKiB.)
func FuzzCheckPassword(f *testing.F) {
	good, _ := HashPasswordParams("pw", TestParams)
	f.Add(good)
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$")
	f.Add("$argon2id$v=19$m=,t=,p=$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5")
	f.Fuzz(func(t *testing.T, h string) {
		p, err := ParseParams(h)
		if err != nil {
			if !errors.Is(err, ErrBadHash) {
				t.Fatalf("error %v is not ErrBadHash", err)
			}
			return
		}
		if p.Memory > 4096 || p.Time > 4 {
			return // valid but too slow for a fuzz iteration
		}
		if _, err := CheckPassword(h, "pw"); err != nil {
			t.Fatalf("parsed but did not check: %v", err)
		}
	})
}

// TestHashesBounded: a storm of password checks runs at most hashSlots
// argon2id hashes (19 MiB each) at once; 100 failed logins took 2 GB.
func TestHashesBounded(t *testing.T) {
	hash, err := HashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	hashPeak.Store(0)
	var wg sync.WaitGroup
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			CheckPassword(hash, "wrong")
		}()
	}
	wg.Wait()
	if peak := hashPeak.Load(); peak > int64(cap(hashSlots)) || peak < 1 {
		t.Errorf("%d hashes ran at once, want at most %d", peak, cap(hashSlots))
	}
}
