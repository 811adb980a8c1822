package dkim

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/posthorn/posthorn/store"
)

// TestEnsureRotateRealStore runs Ensure and Rotate against the bbolt
// store, which keeps one active key per algorithm.
func TestEnsureRotateRealStore(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "posthorn.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddDomain("example.test"); err != nil {
		t.Fatal(err)
	}
	ks, err := Ensure(st, "example.test")
	if err != nil || len(ks) != 2 {
		t.Fatalf("Ensure: %d keys, %v", len(ks), err)
	}
	newKeys, err := Rotate(st, "example.test")
	if err != nil || len(newKeys) != 2 {
		t.Fatalf("Rotate: %v, %v", newKeys, err)
	}
	if sigs, err := Sign(mustKeys(t, st), []byte(message)); err != nil || bytes.Count(sigs, []byte("s="+ks[0].Selector+";"))+bytes.Count(sigs, []byte("s="+ks[1].Selector+";")) != 2 {
		t.Fatalf("before Activate, want the old keys signing: %v\n%s", err, sigs)
	}
	if _, err := Activate(st, "example.test"); err != nil {
		t.Fatal(err)
	}
	all, err := st.DKIMKeys("example.test")
	if err != nil || len(all) != 4 {
		t.Fatalf("after rotation: %d keys, %v", len(all), err)
	}
	active := map[string]bool{}
	for _, k := range all {
		if k.Active {
			active[k.Selector] = true
		}
	}
	if len(active) != 2 || !active[newKeys[0].Selector] || !active[newKeys[1].Selector] {
		t.Fatalf("active selectors %v, want the new %s and %s", active, newKeys[0].Selector, newKeys[1].Selector)
	}
	if again, err := Ensure(st, "example.test"); err != nil || len(again) != 4 {
		t.Fatalf("Ensure after rotation added keys: %d, %v", len(again), err)
	}
	// The stored keys sign, and verify against their records.
	sigs, err := Sign(all, []byte(message))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(sigs, []byte("DKIM-Signature:")) != 2 {
		t.Fatalf("signatures:\n%s", sigs)
	}
	for _, v := range verify(t, all, append(sigs, message...)) {
		if v.Err != nil {
			t.Error(v.Err)
		}
	}
}

func mustKeys(t *testing.T, st store.Store) []store.DKIMKey {
	t.Helper()
	keys, err := st.DKIMKeys("example.test")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
