package admin

import (
	"context"
	"io"
)

// extraCommands are the commands built on other packages (DKIM, DNS,
// import/export).
func extraCommands() map[string]handler {
	return map[string]handler{}
}

// domainAdded runs after a domain is added: it creates the DKIM keys.
func domainAdded(ctx context.Context, env *Env, domain string, out io.Writer) error {
	return nil
}
