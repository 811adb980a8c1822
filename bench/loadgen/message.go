package main

import (
	"bytes"
	"fmt"
	"time"
)

// words give subjects a realistic spread; "quarterly" is in one subject of
// every hundred, and is what the header SEARCH looks for.
var words = []string{
	"meeting", "invoice", "holiday", "budget", "release", "lunch", "report",
	"review", "travel", "contract", "update", "question", "photos", "party",
	"deadline", "draft", "schedule", "ticket", "order", "welcome",
}

// SearchWord is found in the Subject of every message whose number is a
// multiple of 100.
const SearchWord = "quarterly"

// message returns an RFC 5322 message of about size bytes (CRLF, with no
// line starting with a dot) for message number n.
func message(n int, to string, size int) []byte {
	var b bytes.Buffer
	subject := fmt.Sprintf("%s %s number %d", words[n%len(words)], words[(n/7)%len(words)], n)
	if n%100 == 0 {
		subject = SearchWord + " " + subject
	}
	date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Minute)
	fmt.Fprintf(&b, "From: Sender %d <sender%d@peer.test>\r\n", n%50, n%50)
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	if n%3 == 0 {
		b.WriteString("Cc: Someone Else <else@peer.test>\r\n")
	}
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <bench.%d@peer.test>\r\n", n)
	if n%4 == 1 {
		fmt.Fprintf(&b, "In-Reply-To: <bench.%d@peer.test>\r\n", n-1)
		fmt.Fprintf(&b, "References: <bench.%d@peer.test>\r\n", n-1)
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
	const line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// syncSize is the size of message n of the synchronised mailbox: from 2 KB
// to 2 KB + max, spread evenly (about 17 KB on average by default, which
// makes 10,000 messages about 170 MB, like the maildrop of issue 5).
func syncSize(n, max int) int {
	if max <= 0 {
		return 2048
	}
	return 2048 + (n*7919)%max
}
