package relay

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestMintCredentialsCoturnCompatible(t *testing.T) {
	// Known answer: coturn's use-auth-secret computes
	// base64(HMAC-SHA1(secret, "expiry:user")).
	now := time.Unix(1700000000, 0)
	u, p, err := MintCredentials([]byte("north"), "alice", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if u != "1700003600:alice" {
		t.Errorf("username = %q", u)
	}
	if want := RESTPassword([]byte("north"), "1700003600:alice"); p != want || len(p) != 28 {
		t.Errorf("password = %q, want %q (28 chars)", p, want)
	}
	for _, bad := range []struct {
		secret, user string
		ttl          time.Duration
	}{
		{"", "alice", time.Hour},
		{"s", "", time.Hour},
		{"s", "a:b", time.Hour},
		{"s", "alice", 0},
	} {
		if _, _, err := MintCredentials([]byte(bad.secret), bad.user, bad.ttl, now); err == nil {
			t.Errorf("MintCredentials(%q, %q, %s) succeeded", bad.secret, bad.user, bad.ttl)
		}
	}
}

func TestParseRESTUsername(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		user string
	}{
		{"1700000000:alice", true, "alice"},
		{"1700000000:alice:extra", false, ""},
		{"alice", false, ""},
		{":alice", false, ""},
		{"17x:alice", false, ""},
		{"1700000000:", false, ""},
		{"-1:alice", false, ""},
		{"99999999999999:alice", false, ""},
	} {
		_, user, ok := parseRESTUsername(tc.in)
		if ok != tc.ok || user != tc.user {
			t.Errorf("parseRESTUsername(%q) = %q, %v; want %q, %v", tc.in, user, ok, tc.user, tc.ok)
		}
	}
}

func TestParseUsers(t *testing.T) {
	key := LongTermKey("bob", "r", "pw")
	data := "# comment\n\nalice:secret:with:colons\nbob:0x" + hex.EncodeToString(key) + "\n"
	users, err := parseUsers([]byte(data), "r")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(users["alice"], LongTermKey("alice", "r", "secret:with:colons")) {
		t.Error("alice's key is wrong")
	}
	if !bytes.Equal(users["bob"], key) {
		t.Error("bob's precomputed key is wrong")
	}
	for _, tc := range []struct{ name, in, want string }{
		{"no colon", "alice\n", "line 1"},
		{"empty password", "alice:\n", "line 1"},
		{"short key", "alice:0xabcd\n", "32 hex digits"},
		{"bad hex", "alice:0x" + strings.Repeat("zz", 16) + "\n", "not hexadecimal"},
		{"duplicate", "a:x\na:y\n", "listed twice"},
		{"space in name", "a b:x\n", "white space"},
	} {
		_, err := parseUsers([]byte(tc.in), "r")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "abcd") || strings.Contains(err.Error(), ":y")) {
			t.Errorf("%s: error quotes the secret: %v", tc.name, err)
		}
	}
}

func TestParseSecrets(t *testing.T) {
	s, err := parseSecrets([]byte("# new first\nnew-secret-0123456789\n\nold-secret-0123456789\n"))
	if err != nil || len(s) != 2 || string(s[0]) != "new-secret-0123456789" {
		t.Fatalf("parseSecrets = %q, %v", s, err)
	}
	if _, err := parseSecrets([]byte("short\n")); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := parseSecrets([]byte("# only a comment\n")); err == nil {
		t.Error("file without a secret accepted")
	}
}

func FuzzParseUsers(f *testing.F) {
	f.Add([]byte("alice:pw\nbob:0x0123456789abcdef0123456789abcdef\n# c\n"))
	f.Add([]byte(":\n::\nx:0x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		users, err := parseUsers(b, "realm")
		if err != nil {
			return // TestParseUsers checks that errors quote no secret
		}
		for name, k := range users {
			if len(k) != 16 || checkUserName(name) != nil {
				t.Fatalf("bad entry %q (key %d bytes)", name, len(k))
			}
		}
	})
}

func FuzzParseRESTUsername(f *testing.F) {
	f.Add("1700000000:alice")
	f.Add("0:x")
	f.Add("99999999999:" + strings.Repeat("a", 300))
	f.Fuzz(func(t *testing.T, s string) {
		exp, user, ok := parseRESTUsername(s)
		if !ok {
			return
		}
		if checkUserName(user) != nil {
			t.Fatalf("accepted user %q", user)
		}
		if got := exp.Unix(); got < 0 || !strings.HasSuffix(s, ":"+user) {
			t.Fatalf("parse(%q) = %d, %q", s, got, user)
		}
	})
}

func FuzzParseSecrets(f *testing.F) {
	f.Add([]byte("0123456789abcdef\n# x\nfedcba9876543210\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSecrets(b)
		if err != nil {
			if strings.Contains(err.Error(), string(bytes.TrimSpace(b))) && len(bytes.TrimSpace(b)) > 3 {
				t.Fatalf("error quotes the secret: %v", err)
			}
			return
		}
		for _, x := range s {
			if len(x) < 16 || x[0] == '#' {
				t.Fatalf("bad secret %q", x)
			}
		}
	})
}

func TestPreverifyFindsSecret(t *testing.T) {
	st := &dataStats{}
	m, _ := newMetrics(noRegistry{}, st)
	a := newAuthenticator(discardLogger(), m, &credentials{realm: "r", secrets: [][]byte{[]byte("first-secret-0123456"), []byte("second-secret-012345")}})
	u, p, _ := MintCredentials([]byte("second-secret-012345"), "zed", time.Hour, time.Now())
	msg := buildSigned(t, u, "r", p)
	src := netip.MustParseAddrPort("192.0.2.1:5000")
	a.preverify(msg, src)
	k, ok := a.keyFor(src, u, "r")
	if !ok || !bytes.Equal(k, LongTermKey(u, "r", p)) {
		t.Fatalf("preverify did not learn the second secret's key (ok=%v)", ok)
	}
}
