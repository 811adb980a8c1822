package main

import (
	"errors"
	"fmt"

	"github.com/posthorn/posthorn/auth"
)

// hashCmd prints Posthorn's argon2id hash of a password in the PHC string
// format, which Dovecot's ARGON2ID scheme (libsodium) verifies as it is:
// the peer then pays exactly Posthorn's cost (memory, passes) per login.
func hashCmd(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: loadgen hash PASSWORD")
	}
	h, err := auth.HashPassword(args[0])
	if err != nil {
		return err
	}
	fmt.Println(h)
	return nil
}
