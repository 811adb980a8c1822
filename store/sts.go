package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// PutSTSPolicy stores p as its domain's policy, and drops the policies
// that have expired (the bucket holds at most one per domain mailed to).
func (s *boltStore) PutSTSPolicy(p STSPolicy) error {
	p.Domain = strings.ToLower(strings.TrimSuffix(p.Domain, "."))
	if p.Domain == "" {
		return fmt.Errorf("MTA-STS policy without a domain: %w", ErrInvalidName)
	}
	now := time.Now()
	return s.update(func(t *txn) error {
		b := t.tx.Bucket(bucketSTS)
		var expired [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			var old STSPolicy
			if json.Unmarshal(v, &old) != nil || !now.Before(old.Expires) {
				expired = append(expired, k)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return putJSON(b, []byte(p.Domain), p)
	})
}

// STSPolicy returns the stored policy of domain (ErrNotFound), expired or
// not: the caller decides.
func (s *boltStore) STSPolicy(domain string) (STSPolicy, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	var p STSPolicy
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSTS).Get([]byte(d))
		if v == nil {
			return fmt.Errorf("MTA-STS policy of %s: %w", d, ErrNotFound)
		}
		return json.Unmarshal(v, &p)
	})
	return p, err
}
