package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// CoturnImport is a coturn turnserver.conf translated into a `relay:`
// section: what `mediaedge config import-coturn` writes. Users and Secrets
// are the contents of the users and REST secret files the section refers
// to (UsersFile and SecretFile); they are secret, and never part of Section
// or of the messages in Skipped and Notes.
type CoturnImport struct {
	// Section is the relay section's YAML, without the "relay:" key,
	// indented by two spaces.
	Section string
	// Users is the users_file content ("name:password" or "name:0x<key>"
	// per line); nil when the coturn file has no user= lines.
	Users []byte
	// Secrets is the secret_files content (one REST secret per line).
	Secrets []byte
	// GeneratedSecret is true when the coturn file had no credentials at
	// all and Secrets holds a secret generated for the import.
	GeneratedSecret bool
	// Skipped lists every setting not carried over, in file order.
	Skipped []CoturnSkip
	// Notes are differences the admin should review (placeholders, changed
	// defaults), in file order where they belong to a line.
	Notes []string
}

// CoturnSkip is one coturn setting the import could not carry over.
type CoturnSkip struct {
	Line   int
	Key    string
	Reason string
}

// CoturnOptions name the files the section refers to and fill what the
// coturn file may lack.
type CoturnOptions struct {
	// UsersFile and SecretFile are the paths written into the section.
	UsersFile, SecretFile string
	// ExternalIP is used as relay_address when the coturn file has no
	// external-ip and listens on all addresses; empty leaves a
	// placeholder (192.0.2.1) and a note.
	ExternalIP string
	// NewSecret returns a fresh REST secret for a coturn file without
	// credentials.
	NewSecret func() (string, error)
}

// coturnLine is one setting of a turnserver.conf.
type coturnLine struct {
	line       int
	key, value string
}

// parseCoturn reads coturn's configuration syntax: "key=value",
// "key value" or a bare "key" per line, '#' comments, optional leading
// "--" and quotes around the value.
func parseCoturn(data []byte) ([]coturnLine, error) {
	var out []coturnLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		s = strings.TrimPrefix(s, "--")
		key, val := s, ""
		if i := strings.IndexAny(s, "= \t"); i >= 0 {
			key, val = s[:i], strings.TrimSpace(s[i+1:])
			val = strings.TrimPrefix(val, "=")
			val = strings.TrimSpace(val)
		}
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		out = append(out, coturnLine{line: n, key: key, value: val})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("relay: reading the coturn file: %w", err)
	}
	return out, nil
}

// coturnUnsupported are coturn settings with no mediaedge equivalent, and
// why.
var coturnUnsupported = map[string]string{
	"alt-listening-port":                "no alternate port for RFC 5780 NAT discovery",
	"alt-tls-listening-port":            "no alternate port for RFC 5780 NAT discovery",
	"aux-server":                        "no auxiliary servers",
	"udp-self-balance":                  "no self-balancing",
	"listening-device":                  "bind by address (listeners[].addr), not by device",
	"relay-device":                      "bind by address (relay_ip), not by device",
	"relay-threads":                     "set udp_shards (SO_REUSEPORT sockets per UDP listener) instead",
	"cpus":                              "set udp_shards instead",
	"stale-nonce":                       "nonces are pion's, not configurable",
	"max-allocate-lifetime":             "pion grants what the client asks up to 1h; limits.max_duration ends allocations after a fixed time",
	"channel-lifetime":                  "fixed by RFC 8656 (10 minutes)",
	"permission-lifetime":               "fixed by RFC 8656 (5 minutes)",
	"bps-capacity":                      "no cap on the relay's total bandwidth; limits.bitrate_per_user caps each user",
	"userdb":                            "no SQLite user database: export the users to users_file",
	"psql-userdb":                       "no PostgreSQL user database: export the users to users_file",
	"mysql-userdb":                      "no MySQL user database: export the users to users_file",
	"mongo-userdb":                      "no MongoDB user database: export the users to users_file",
	"redis-userdb":                      "no Redis user database: export the users to users_file",
	"redis-statsdb":                     "statistics are Prometheus metrics (metrics.listen)",
	"oauth":                             "no third-party OAuth authorization (RFC 7635)",
	"server-name":                       "no server name",
	"no-auth":                           "authentication is always required",
	"secure-stun":                       "no authenticated STUN Binding",
	"no-stun":                           "Binding requests are always answered",
	"mobility":                          "no ICE mobility (RFC 8016)",
	"no-tcp-relay":                      "TCP relay allocations (RFC 6062) cannot be turned off",
	"no-udp-relay":                      "UDP relay allocations cannot be turned off",
	"dtls-listening-port":               "no DTLS listener",
	"cipher-list":                       "TLS cipher suites are Go's defaults",
	"ec-curve-name":                     "TLS curves are Go's defaults",
	"dh566":                             "no DH parameters (Go's TLS uses ECDHE)",
	"dh1066":                            "no DH parameters (Go's TLS uses ECDHE)",
	"dh-file":                           "no DH parameters (Go's TLS uses ECDHE)",
	"no-tlsv1_2":                        "TLS 1.2 cannot be turned off (Go's TLS offers 1.2 and 1.3)",
	"CA-file":                           "no client certificates",
	"ca-file":                           "no client certificates",
	"pkey-pwd":                          "encrypted private keys are not read: decrypt the key file",
	"cli-ip":                            "no telnet CLI: the control API is a unix socket (mediaedge status, turn allocations, turn kill)",
	"cli-port":                          "no telnet CLI: the control API is a unix socket",
	"cli-password":                      "no telnet CLI: the control API is a unix socket",
	"cli-max-output-sessions":           "no telnet CLI",
	"web-admin":                         "no web admin: the control API is a unix socket",
	"web-admin-ip":                      "no web admin",
	"web-admin-port":                    "no web admin",
	"web-admin-listen-on-workers":       "no web admin",
	"log-file":                          "logs go to stderr (the journal under systemd)",
	"syslog":                            "logs go to stderr (the journal under systemd)",
	"simple-log":                        "logs go to stderr (the journal under systemd)",
	"new-log-timestamp":                 "logs go to stderr (the journal under systemd)",
	"new-log-timestamp-format":          "logs go to stderr (the journal under systemd)",
	"log-binding":                       "logs go to stderr (the journal under systemd)",
	"no-stdout-log":                     "logs go to stderr (the journal under systemd)",
	"pidfile":                           "no PID file: systemd tracks the process (Type=notify)",
	"proc-user":                         "the unit's User= sets the account",
	"proc-group":                        "the unit's Group= sets the group",
	"rfc5780":                           "RFC 5780 NAT behaviour discovery is not offered",
	"no-software-attribute":             "the SOFTWARE attribute is pion's",
	"keep-address-family":               "allocations follow REQUESTED-ADDRESS-FAMILY (RFC 6156)",
	"allocation-default-address-family": "allocations are IPv4 unless the client asks for IPv6 (RFC 6156)",
	"check-origin-consistency":          "no ORIGIN checks",
	"acme-redirect":                     "no ACME redirect",
	"prod":                              "no production-mode switch",
	"no-dynamic-ip-list":                "peer lists reload with SIGHUP (systemctl reload mediaedge)",
	"no-dynamic-realms":                 "one realm",
	"sha256":                            "message integrity is SHA-1 (RFC 8489 SHA-256 is not offered)",
	"prometheus":                        "metrics are always exported at metrics.listen (default 127.0.0.1:9477), named mediaedge_relay_*",
	"prometheus-port":                   "metrics are exported at metrics.listen",
	"prometheus-username-labels":        "metrics have no per-user labels",
	"max-allocation-lifetime":           "limits.max_duration ends allocations after a fixed time",
	"external-ip-resolve":               "give external-ip as an address",
	"server-relay":                      "no server relay",
}

// coturnImplied are coturn settings mediaedge always behaves like.
var coturnImplied = map[string]bool{
	"lt-cred-mech":       true, // long-term credentials are the only mechanism
	"fingerprint":        true, // pion adds FINGERPRINT to its responses
	"no-loopback-peers":  true, // loopback peers are refused unless allowed_peers lists them
	"no-multicast-peers": true, // multicast peers are always refused
	"no-cli":             true, // there is no telnet CLI
	"no-dtls":            true, // there is no DTLS listener
	"verbose":            true, // log.level info is the default
	"use-auth-secret":    true, // handled with static-auth-secret
	"no-tlsv1":           true, // Go's TLS server starts at 1.2
	"no-tlsv1_1":         true,
	// RFC 5780 NAT discovery and RFC 3489 STUN are not offered at all.
	"no-rfc5780":                        true,
	"no-stun-backward-compatibility":    true,
	"response-origin-only-with-rfc5780": true,
}

// ImportCoturn translates a coturn turnserver.conf.
func ImportCoturn(data []byte, opts CoturnOptions) (*CoturnImport, error) {
	lines, err := parseCoturn(data)
	if err != nil {
		return nil, err
	}
	var (
		imp                   CoturnImport
		port, tlsPort         = 3478, 5349
		listenIPs             []string
		relay4, relay6        string
		ext4, ext6            string
		minPort, maxPort      = 49152, 65535
		realm                 string
		users                 []string
		secrets               []string
		useAuthSecret         bool
		denied, allowed       []string
		totalQuota, userQuota int
		maxBps                int64
		cert, pkey            string
		noUDP, noTCP, noTLS   bool
		dtls                  = true
		verbose               bool
		separator             = ":"
		sepLine               int
	)
	skip := func(l coturnLine, why string) {
		imp.Skipped = append(imp.Skipped, CoturnSkip{Line: l.line, Key: l.key, Reason: why})
	}
	atoi := func(l coturnLine, lo, hi int) (int, bool) {
		v, err := strconv.Atoi(l.value)
		if err != nil || v < lo || v > hi {
			skip(l, fmt.Sprintf("not a number from %d to %d", lo, hi))
			return 0, false
		}
		return v, true
	}
	for _, l := range lines {
		switch l.key {
		case "listening-port":
			if v, ok := atoi(l, 1, 65535); ok {
				port = v
			}
		case "tls-listening-port":
			if v, ok := atoi(l, 1, 65535); ok {
				tlsPort = v
			}
		case "listening-ip":
			if a, err := netip.ParseAddr(l.value); err == nil && a.Zone() == "" {
				listenIPs = append(listenIPs, a.String())
			} else {
				skip(l, "not an IP address")
			}
		case "relay-ip":
			a, err := netip.ParseAddr(l.value)
			switch {
			case err != nil || a.Zone() != "":
				skip(l, "not an IP address")
			case a.Is4() && relay4 == "":
				relay4 = a.String()
			case a.Is6() && relay6 == "":
				relay6 = a.String()
			default:
				skip(l, "one relay address per family: the first is used")
			}
		case "external-ip":
			pub, priv, _ := strings.Cut(l.value, "/")
			pa, err := netip.ParseAddr(pub)
			if err != nil || pa.Zone() != "" {
				skip(l, "not an IP address (or public/private pair)")
				continue
			}
			var qa netip.Addr
			if priv != "" {
				if qa, err = netip.ParseAddr(priv); err != nil || qa.Zone() != "" || qa.Is4() != pa.Is4() {
					skip(l, "the private address is not an IP address of the same family")
					continue
				}
			}
			switch {
			case pa.Is4() && ext4 == "":
				ext4 = pa.String()
				if qa.IsValid() && relay4 == "" {
					relay4 = qa.String()
				}
			case pa.Is6() && ext6 == "":
				ext6 = pa.String()
				if qa.IsValid() && relay6 == "" {
					relay6 = qa.String()
				}
			default:
				skip(l, "one advertised address per family: the first is used")
			}
		case "min-port":
			if v, ok := atoi(l, 1, 65535); ok {
				minPort = v
			}
		case "max-port":
			if v, ok := atoi(l, 1, 65535); ok {
				maxPort = v
			}
		case "realm":
			if realm == "" {
				realm = l.value
			} else {
				skip(l, "one realm: the first is used")
			}
		case "user":
			name, pass, ok := strings.Cut(l.value, ":")
			if !ok || name == "" || pass == "" {
				skip(l, "want name:password or name:0x<key>")
				continue
			}
			users = append(users, name+":"+pass)
		case "static-auth-secret":
			if l.value == "" {
				skip(l, "empty secret")
				continue
			}
			secrets = append(secrets, l.value)
		case "rest-api-separator":
			separator, sepLine = l.value, l.line
		case "denied-peer-ip", "allowed-peer-ip":
			ps, err := coturnRange(l.value)
			if err != nil {
				skip(l, err.Error())
				continue
			}
			if l.key == "denied-peer-ip" {
				denied = append(denied, ps...)
			} else {
				allowed = append(allowed, ps...)
			}
		case "allow-loopback-peers":
			allowed = append(allowed, "127.0.0.0/8", "::1/128")
			imp.Notes = append(imp.Notes, fmt.Sprintf("line %d: allow-loopback-peers became allowed_peers 127.0.0.0/8 and ::1/128", l.line))
		case "total-quota":
			if v, ok := atoi(l, 0, 1<<30); ok {
				totalQuota = v
			}
		case "user-quota":
			if v, ok := atoi(l, 0, 1<<30); ok {
				userQuota = v
			}
		case "max-bps":
			v, err := strconv.ParseInt(l.value, 10, 64)
			if err != nil || v < 0 || v > 1<<40 {
				skip(l, "not a number of bytes per second")
				continue
			}
			maxBps = v
		case "cert":
			cert = l.value
		case "pkey":
			pkey = l.value
		case "no-udp":
			noUDP = true
		case "no-tcp":
			noTCP = true
		case "no-tls":
			noTLS = true
		case "no-dtls":
			dtls = false
		case "Verbose":
			verbose = true
		case "use-auth-secret":
			useAuthSecret = true
		default:
			switch {
			case coturnImplied[l.key]:
			default:
				why, ok := coturnUnsupported[l.key]
				if !ok {
					why = "not a coturn setting mediaedge knows"
				}
				skip(l, why)
			}
		}
	}
	_ = verbose // log levels belong to the log section; see Notes
	if separator != ":" {
		skip(coturnLine{line: sepLine, key: "rest-api-separator"}, `REST usernames are "<expiry>:<name>"; the separator is always ':'`)
	}
	if len(secrets) > 0 && !useAuthSecret {
		imp.Notes = append(imp.Notes, "static-auth-secret without use-auth-secret: coturn ignores the secret, mediaedge accepts REST credentials signed with it")
	}
	if useAuthSecret && len(secrets) == 0 {
		imp.Notes = append(imp.Notes, "use-auth-secret without static-auth-secret (a secret in a database?): a new secret was generated; give your credential service the one in the secret file")
	}
	if len(users) == 0 && len(secrets) == 0 {
		if opts.NewSecret == nil {
			return nil, fmt.Errorf("relay: the coturn file has no credentials and no secret generator was given")
		}
		s, err := opts.NewSecret()
		if err != nil {
			return nil, err
		}
		secrets = []string{s}
		imp.GeneratedSecret = true
		if !useAuthSecret {
			imp.Notes = append(imp.Notes, "no user= and no static-auth-secret: a REST secret was generated; mint credentials with `mediaedge turn credentials`")
		}
	}
	if len(users) > 0 {
		imp.Users = []byte(strings.Join(users, "\n") + "\n")
	}
	if len(secrets) > 0 {
		imp.Secrets = []byte(strings.Join(secrets, "\n") + "\n")
	}
	if realm == "" {
		realm = "mediaedge.local"
		imp.Notes = append(imp.Notes, "no realm: relay.realm is mediaedge.local; set the realm your clients use (static users' 0x keys depend on it)")
	}
	if minPort > maxPort {
		imp.Notes = append(imp.Notes, fmt.Sprintf("min-port %d is above max-port %d: swapped", minPort, maxPort))
		minPort, maxPort = maxPort, minPort
	}
	{
		imp.Notes = append(imp.Notes, "coturn relays to private (RFC 1918), CGNAT and ULA peers unless denied-peer-ip lists them; mediaedge refuses them unless allowed_peers lists them: add the internal ranges your clients must reach")
	}
	if len(listenIPs) == 0 {
		listenIPs = []string{"0.0.0.0"}
	}
	if relay4 == "" && ext4 == "" {
		wild := true
		for _, a := range listenIPs {
			if p, _ := netip.ParseAddr(a); p.Is4() && !p.IsUnspecified() {
				wild = false
			}
		}
		if wild {
			relay4 = "0.0.0.0"
			ext4 = opts.ExternalIP
			if ext4 == "" {
				ext4 = "192.0.2.1"
				imp.Notes = append(imp.Notes, "no external-ip or relay-ip and the relay listens on all addresses: relay_address is the placeholder 192.0.2.1: EDIT it (or pass --external-ip)")
			}
		}
	} else if relay4 == "" && ext4 != "" {
		relay4 = "0.0.0.0"
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, "  "+format+"\n", a...) }
	w("enabled: true")
	w("realm: %s", yamlString(realm))
	w("listeners:")
	tlsOn := !noTLS && cert != "" && pkey != ""
	if !noTLS && (cert == "") != (pkey == "") {
		imp.Notes = append(imp.Notes, "cert without pkey (or pkey without cert): no TLS listener")
	}
	if tlsOn && dtls {
		imp.Notes = append(imp.Notes, fmt.Sprintf("coturn also serves DTLS on port %d; mediaedge has no DTLS listener", tlsPort))
	}
	n := 0
	for _, ip := range listenIPs {
		host := ip
		if strings.Contains(ip, ":") {
			host = "[" + ip + "]"
		}
		if !noUDP {
			w("  - {transport: udp, addr: %q}", fmt.Sprintf("%s:%d", host, port))
			n++
		}
		if !noTCP {
			w("  - {transport: tcp, addr: %q}", fmt.Sprintf("%s:%d", host, port))
			n++
		}
		if tlsOn {
			w("  - {transport: tls, addr: %q, cert_file: %s, key_file: %s}", fmt.Sprintf("%s:%d", host, tlsPort), yamlString(cert), yamlString(pkey))
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("relay: the coturn file turns every listener off (no-udp, no-tcp, no TLS)")
	}
	w("relay_ip: %s", yamlString(relay4))
	w("relay_address: %s", yamlString(ext4))
	w("relay_ipv6: %s", yamlString(relay6))
	if relay6 == "" && ext6 != "" {
		imp.Notes = append(imp.Notes, "an IPv6 external-ip without an IPv6 relay-ip: IPv6 allocations stay off")
		ext6 = ""
	}
	w("relay_address_ipv6: %s", yamlString(ext6))
	w("ports: %d-%d", minPort, maxPort)
	w("auth:")
	if imp.Users != nil {
		w("  users_file: %s", yamlString(opts.UsersFile))
	}
	if imp.Secrets != nil {
		w("  secret_files: [%s]", yamlString(opts.SecretFile))
	}
	w("allowed_peers: %s", yamlList(allowed))
	w("denied_peers: %s", yamlList(denied))
	w("limits:")
	w("  max_allocations: %d", totalQuota)
	w("  max_allocations_per_user: %d", userQuota)
	w("  bitrate_per_allocation: %d", maxBps*8)
	imp.Section = b.String()
	if verbose {
		imp.Notes = append(imp.Notes, "Verbose: set log.level: debug")
	}
	return &imp, nil
}

// coturnRange converts coturn's "ip", "ip1-ip2" or CIDR form to prefixes.
func coturnRange(s string) ([]string, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return []string{p.Masked().String()}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := netip.ParseAddr(strings.TrimSpace(lo))
	if err != nil || a.Zone() != "" {
		// A zone (fe80::1%eth0) names a link, not a peer range.
		return nil, fmt.Errorf("%q is not an address, range or prefix", clipName(s))
	}
	if !isRange {
		return []string{netip.PrefixFrom(a, a.BitLen()).String()}, nil
	}
	b, err := netip.ParseAddr(strings.TrimSpace(hi))
	if err != nil || b.Zone() != "" || a.Is4() != b.Is4() || b.Less(a) {
		return nil, fmt.Errorf("%q is not a range low-high of one family", clipName(s))
	}
	var out []string
	for _, p := range rangePrefixes(a, b) {
		out = append(out, p.String())
	}
	return out, nil
}

// rangePrefixes returns the fewest prefixes covering exactly lo..hi.
func rangePrefixes(lo, hi netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for {
		bits := lo.BitLen()
		// The largest block starting at lo that does not pass hi.
		for bits > 0 {
			p := netip.PrefixFrom(lo, bits-1).Masked()
			if p.Addr() != lo || lastAddr(p).Compare(hi) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		end := lastAddr(p)
		if end.Compare(hi) >= 0 {
			return out
		}
		lo = end.Next()
	}
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	r, _ := netip.AddrFromSlice(a)
	return r
}

func yamlString(s string) string {
	if s == "" {
		return `""`
	}
	return strconv.Quote(s)
}

func yamlList(xs []string) string {
	if len(xs) == 0 {
		return "[]"
	}
	sort.Strings(xs)
	q := make([]string, 0, len(xs))
	prev := ""
	for _, x := range xs {
		if x == prev {
			continue
		}
		prev = x
		// Quoted: an IPv6 prefix such as ::1/128 is not a plain YAML
		// scalar in a flow sequence.
		q = append(q, strconv.Quote(x))
	}
	return "[" + strings.Join(q, ", ") + "]"
}
