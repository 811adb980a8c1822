package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// processTree returns roots and all their descendants, from the parent
// PIDs in /proc/*/stat.
func processTree(roots []int) []int {
	parent := map[int]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		parent[pid], _ = strconv.Atoi(f[1])
	}
	in := map[int]bool{}
	for _, r := range roots {
		in[r] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid] = true
				changed = true
			}
		}
	}
	var out []int
	for pid := range in {
		out = append(out, pid)
	}
	return out
}

// memory is the memory of a process tree in KiB.
type memory struct {
	PssKiB    int64
	AnonKiB   int64 // Pss_Anon: the process's own memory
	FileKiB   int64 // Pss_File: mapped files (page cache), e.g. a mmap'd database
	RssKiB    int64
	Processes int
}

// treeMemory sums Pss (smaps_rollup) and VmRSS (status) over the tree.
func treeMemory(roots []int) (memory, error) {
	var m memory
	for _, pid := range processTree(roots) {
		// One read of smaps_rollup, so that the total and its parts
		// describe the same moment.
		roll, err := procFields(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:", "Pss_Anon:", "Pss_File:")
		if err != nil {
			continue // the process ended meanwhile
		}
		pss, anon, file := roll[0], roll[1], roll[2]
		rss, _ := procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		m.AnonKiB += anon
		m.FileKiB += file
		m.PssKiB += pss
		m.RssKiB += rss
		m.Processes++
	}
	if m.Processes == 0 {
		return m, fmt.Errorf("no process of %v is running", roots)
	}
	return m, nil
}

// procFields reads several "Key: value kB" fields from one read of path.
func procFields(path string, keys ...string) ([]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	for _, line := range strings.Split(string(b), "\n") {
		for i, k := range keys {
			if rest, ok := strings.CutPrefix(line, k); ok {
				if fs := strings.Fields(rest); len(fs) > 0 {
					out[i], _ = strconv.ParseInt(fs[0], 10, 64)
				}
			}
		}
	}
	return out, nil
}

func procField(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), key) {
			fs := strings.Fields(s.Text()[len(key):])
			if len(fs) > 0 {
				return strconv.ParseInt(fs[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

// raiseFileLimit lifts RLIMIT_NOFILE to its hard maximum, for the idle
// connection test.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
