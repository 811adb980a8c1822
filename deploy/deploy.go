// Package deploy holds the files to run Posthorn in production: the
// systemd unit (posthorn.service), the example configuration
// (posthorn.toml.example), the container build (Containerfile) and the
// deploy guide (in README.md). The package has no code; its test checks that
// the example configuration loads and names every key, and that systemd
// accepts the unit.
package deploy
