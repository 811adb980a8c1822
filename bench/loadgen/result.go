package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

// Figure is one measured number.
type Figure struct {
	Key    string  `json:"key"`
	Label  string  `json:"label"`
	Unit   string  `json:"unit"`
	Value  float64 `json:"value"`
	Higher bool    `json:"higher_is_better"`
	Note   string  `json:"note,omitempty"`
}

// Results is what one run measured.
type Results struct {
	Name    string   `json:"name"`
	Figures []Figure `json:"figures"`
}

func (r *Results) add(key, label, unit string, v float64, higher bool) {
	r.Figures = append(r.Figures, Figure{Key: key, Label: label, Unit: unit, Value: v, Higher: higher})
	fmt.Fprintf(os.Stderr, "  %-46s %12.3f %s\n", label, v, unit)
}

func (r *Results) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	return &r, json.Unmarshal(b, &r)
}

// tableCmd prints the figures of two runs side by side with the ratio
// a/b per figure, as a Markdown table.
func tableCmd(args []string) error {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	a := fs.String("a", "", "results of the first server (Posthorn)")
	b := fs.String("b", "", "results of the second server (the peer)")
	fs.Parse(args)
	ra, err := readResults(*a)
	if err != nil {
		return err
	}
	rb, err := readResults(*b)
	if err != nil {
		return err
	}
	printTable(os.Stdout, ra, rb)
	return nil
}

func printTable(w io.Writer, a, b *Results) {
	bv := map[string]Figure{}
	for _, f := range b.Figures {
		bv[f.Key] = f
	}
	fmt.Fprintf(w, "| figure | unit | %s | %s | %s/%s | %s better |\n", a.Name, b.Name, a.Name, b.Name, a.Name)
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | :---: |")
	for _, fa := range a.Figures {
		fb, ok := bv[fa.Key]
		peer, ratio, better := "—", "—", "—"
		if ok {
			peer = num(fb.Value)
			if fb.Value != 0 {
				ratio = fmt.Sprintf("%.2f", fa.Value/fb.Value)
			}
			if (fa.Value > fb.Value) == fa.Higher && fa.Value != fb.Value {
				better = "yes"
			} else {
				better = "no"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", fa.Label, fa.Unit, num(fa.Value), peer, ratio, better)
	}
}

func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 4, 64)
	}
}

// portsCmd prints n free loopback ports, one per line. The ports are
// free when printed; the caller binds them right away.
func portsCmd(args []string) error {
	n := 1
	if len(args) > 0 {
		var err error
		if n, err = strconv.Atoi(args[0]); err != nil {
			return err
		}
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}
