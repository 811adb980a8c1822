package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs moves the flags of the final command in front of its
// positional arguments, so that `posthorn user add ADDRESS
// --password-stdin` works as DESIGN.md writes it: urfave/cli v2 stops
// parsing flags at the first positional argument. A "--" ends the flags.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	cmds, flags := app.Commands, app.Flags
	i := 1
	for i < len(args) {
		a := args[i]
		if isFlag(a) {
			i += flagWidth(flags, a, i, args)
			continue
		}
		next := findCommand(cmds, a)
		if next == nil {
			break
		}
		cmds, flags = next.Subcommands, next.Flags
		i++
		if len(cmds) == 0 {
			break
		}
	}
	head := append([]string{}, args[:i]...)
	var fl, pos []string
	for j := i; j < len(args); j++ {
		a := args[j]
		if a == "--" {
			pos = append(pos, args[j:]...)
			break
		}
		if isFlag(a) {
			w := flagWidth(flags, a, j, args)
			fl = append(fl, args[j:j+w]...)
			j += w - 1
			continue
		}
		pos = append(pos, a)
	}
	out := append(head, fl...)
	return append(out, pos...)
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' && a != "--" }

// flagWidth is 2 for a flag that takes its value from the next argument.
func flagWidth(flags []cli.Flag, a string, at int, args []string) int {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") || at+1 >= len(args) {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, isBool := f.(*cli.BoolFlag); isBool {
				return 1
			}
			return 2
		}
	}
	return 1
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
