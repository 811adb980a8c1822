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
		pss, err := procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
		if err != nil {
			continue // the process ended meanwhile
		}
		rss, _ := procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		anon, _ := procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss_Anon:")
		file, _ := procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss_File:")
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
