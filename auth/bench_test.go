package auth

import (
	"context"
	"testing"

	"github.com/posthorn/posthorn/store"
)

// BenchmarkCheckPasswordDefault measures one login's hash cost with
// DefaultParams (the figure the parameters were chosen by).
func BenchmarkCheckPasswordDefault(b *testing.B) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if ok, err := CheckPassword(h, "correct horse battery staple"); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/login")
}

// BenchmarkAuthenticateTestParams is the cost of Authenticate itself
// (store lookup, limiter) with cheap hash parameters.
func BenchmarkAuthenticateTestParams(b *testing.B) {
	f := &fakeStore{accounts: map[string]store.Account{}}
	h, _ := HashPasswordParams("pw", TestParams)
	f.accounts["alice@example.test"] = store.Account{Address: "alice@example.test", PasswordHash: h}
	a := New(f, nil)
	ctx := context.Background()
	for b.Loop() {
		if _, err := a.Authenticate(ctx, client, "alice@example.test", "pw"); err != nil {
			b.Fatal(err)
		}
	}
}
