package web

import (
	"encoding/xml"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/internal/smtpaddr"
)

// The Thunderbird autoconfig document, clientConfig version 1.1
// (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
type clientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider emailProvider `xml:"emailProvider"`
}

type emailProvider struct {
	ID               string         `xml:"id,attr"`
	Domains          []string       `xml:"domain"`
	DisplayName      string         `xml:"displayName"`
	DisplayShortName string         `xml:"displayShortName"`
	Incoming         []serverConfig `xml:"incomingServer"`
	Outgoing         []serverConfig `xml:"outgoingServer"`
}

type serverConfig struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"`
}

// Socket types of the autoconfig format. "plain" is never offered: the
// password would cross the network in the clear.
const (
	socketSSL      = "SSL"
	socketSTARTTLS = "STARTTLS"
)

// offered lists, in order of preference, the listeners autoconfig may
// announce: implicit TLS first (RFC 8314 section 3.3).
var offered = []struct {
	listener, typ, socket string
	incoming              bool
}{
	{"imaps", "imap", socketSSL, true},
	{"imap", "imap", socketSTARTTLS, true},
	{"pop3s", "pop3", socketSSL, true},
	{"pop3", "pop3", socketSTARTTLS, true},
	{"submissions", "smtp", socketSSL, false},
	{"submission", "smtp", socketSTARTTLS, false},
}

// autoconfig builds the document for domain. It names that domain only:
// listing every domain served told anyone who asked about one which
// others share its server.
func (s *Server) autoconfig(domain string) clientConfig {
	p := emailProvider{
		ID:               domain,
		Domains:          []string{domain},
		DisplayName:      domain,
		DisplayShortName: domain,
	}
	for _, o := range offered {
		port := s.port(o.listener)
		if port == 0 {
			continue
		}
		sc := serverConfig{
			Type:           o.typ,
			Hostname:       s.Config.Hostname,
			Port:           port,
			SocketType:     o.socket,
			Username:       "%EMAILADDRESS%",
			Authentication: "password-cleartext",
		}
		if o.incoming {
			p.Incoming = append(p.Incoming, sc)
		} else {
			p.Outgoing = append(p.Outgoing, sc)
		}
	}
	return clientConfig{Version: "1.1", Provider: p}
}

func (s *Server) serveAutoconfig(w http.ResponseWriter, r *http.Request) {
	domains, err := s.Domains.Domains()
	if err != nil {
		s.logger().Error("autoconfig: listing domains", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	domain := s.pickDomain(r, domains)
	if domain == "" {
		http.NotFound(w, r)
		return
	}
	body, err := xml.MarshalIndent(s.autoconfig(domain), "", "  ")
	if err != nil {
		s.logger().Error("autoconfig: encoding", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)+1))
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}

// pickDomain chooses the domain a request asks about, "" if we do not
// serve it. Thunderbird sends ?emailaddress=user@domain; without it the
// Host header names autoconfig.<domain>, the domain itself, or our
// hostname.
func (s *Server) pickDomain(r *http.Request, domains []string) string {
	served := func(d string) string {
		d = strings.TrimSuffix(strings.ToLower(d), ".")
		// Thunderbird sends the address as the user typed it: a
		// domain in U-labels is ours under its A-labels, the form
		// the store keeps (RFC 5891 section 5).
		if a, ok := smtpaddr.ALabels(d); ok {
			d = a
		}
		for _, x := range domains {
			if strings.EqualFold(x, d) {
				return x
			}
		}
		return ""
	}
	if addr := r.URL.Query().Get("emailaddress"); addr != "" {
		i := strings.LastIndexByte(addr, '@')
		if i < 0 {
			return ""
		}
		return served(addr[i+1:])
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if d, ok := strings.CutPrefix(host, "autoconfig."); ok {
		return served(d)
	}
	if d := served(host); d != "" {
		return d
	}
	if strings.EqualFold(host, s.Config.Hostname) && len(domains) > 0 {
		return domains[0]
	}
	return ""
}
