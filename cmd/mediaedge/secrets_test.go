package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/internal/control"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

func randomText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// turnAllocate allocates on the relay with the given credentials and returns
// the error, closing everything it opened.
func turnAllocate(t *testing.T, server, user, pass string) error {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, Realm: "mediaedge.local", RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	relayConn, err := c.AllocateWithContext(ctx)
	if err != nil {
		return err
	}
	return relayConn.Close()
}

// TestNoSecretInLogs runs the daemon with every kind of secret it handles
// (static TURN users, REST shared secrets and the credentials minted from
// them, the generated trial password, the control API token, SRTP master
// keys given to and returned by the gateway), exercises each at debug log
// level (successful and failed authentications, reload, re-key, shutdown),
// and checks that none of them appears in the logs.
func TestNoSecretInLogs(t *testing.T) {
	dir := t.TempDir()
	userPass := "pw-" + randomText(t, 12)
	restSecret := "rest-" + randomText(t, 16)
	token := "tok-" + randomText(t, 16)
	writeFile(t, filepath.Join(dir, "users"), "alice:"+userPass+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "rest"), restSecret+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "token"), token+"\n", 0o600)
	turnPort, ctlPort := testutil.FreePort(t), testutil.FreePort(t)
	cfgPath := filepath.Join(dir, "mediaedge.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`log:
  level: debug
metrics:
  listen: 127.0.0.1:0
control:
  socket: %[1]s/me.sock
  tcp_listen: 127.0.0.1:%[3]d
  token_file: token
relay:
  enabled: true
  listeners:
    - {transport: udp, addr: "127.0.0.1:%[2]d"}
  relay_ip: 127.0.0.1
  auth:
    users_file: users
    secret_files: [rest]
    generate_user: demo
gateway:
  enabled: true
policy:
  enabled: false
`, dir, turnPort, ctlPort), 0o644)

	c := startChild(t, nil, "run", "--config", cfgPath)
	server := fmt.Sprintf("127.0.0.1:%d", turnPort)
	cl := control.NewClient(fmt.Sprintf("127.0.0.1:%d", ctlPort), token)
	defer cl.Close()
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for cl.Do(ctx, "GET", "/v1/status", nil, nil) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not come up:\n%s", c.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The generated trial password is printed on the console (stdout)
	// once, when the relay starts: the control API answers before that.
	re := regexp.MustCompile(`demo / (\S+)`)
	m := re.FindStringSubmatch(c.stdout.String())
	for m == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no generated credentials on stdout: %q", c.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
		m = re.FindStringSubmatch(c.stdout.String())
	}
	demoPass := m[1]

	restUser, restPass, err := turn.GenerateLongTermTURNRESTCredentials(restSecret, "bob", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", userPass, true},
		{"demo", demoPass, true},
		{restUser, restPass, true},
		{"alice", userPass + "x", false},
		{restUser, restPass[:len(restPass)-2] + "AA", false},
		{"mallory", userPass, false},
	} {
		err := turnAllocate(t, server, tc.user, tc.pass)
		if (err == nil) != tc.ok {
			t.Errorf("allocate as %s: err = %v, want success %v", tc.user, err, tc.ok)
		}
	}

	// Gateway: keys given by the client and keys the gateway returns.
	internalKey := make([]byte, 30)
	cloudKey := make([]byte, 30)
	rand.Read(internalKey)
	rand.Read(cloudKey)
	inInline := base64.StdEncoding.EncodeToString(internalKey)
	cloudInline := base64.StdEncoding.EncodeToString(cloudKey)
	req := map[string]any{
		"internal": map[string]any{"remote": "127.0.0.1:9", "rtcp_mux": true, "crypto": "1 AES_CM_128_HMAC_SHA1_80 inline:" + inInline},
		"cloud":    map[string]any{"remote": "127.0.0.1:9", "rtcp_mux": true, "crypto": "1 AES_CM_128_HMAC_SHA1_80 inline:" + cloudInline},
	}
	var sess struct {
		ID       string `json:"id"`
		Internal struct {
			Crypto string `json:"crypto"`
		} `json:"internal"`
		Cloud struct {
			Crypto string `json:"crypto"`
		} `json:"cloud"`
	}
	if err := cl.Do(ctx, "POST", "/v1/sessions", req, &sess); err != nil {
		t.Fatalf("create session: %v", err)
	}
	var rekey struct {
		Crypto string `json:"crypto"`
	}
	if err := cl.Do(ctx, "POST", "/v1/sessions/"+sess.ID+"/rekey", map[string]string{"leg": "cloud"}, &rekey); err != nil {
		t.Fatalf("rekey: %v", err)
	}
	// A request with a malformed key must be refused without echoing it.
	badKey := "1 AES_CM_128_HMAC_SHA1_80 inline:" + inInline[:20] + "!!notbase64"
	bad := map[string]any{"internal": map[string]any{"crypto": badKey}, "cloud": map[string]any{"crypto": "1 AES_CM_128_HMAC_SHA1_80 inline:" + cloudInline}}
	if err := cl.Do(ctx, "POST", "/v1/sessions", bad, nil); err == nil {
		t.Error("session with a malformed key accepted")
	} else if strings.Contains(err.Error(), inInline[:20]) {
		t.Errorf("error echoes key material: %v", err)
	}
	if err := cl.Do(ctx, "DELETE", "/v1/sessions/"+sess.ID, nil, nil); err != nil {
		t.Fatalf("delete session: %v", err)
	}
	// A wrong control token.
	wrong := control.NewClient(fmt.Sprintf("127.0.0.1:%d", ctlPort), token+"x")
	if err := wrong.Do(ctx, "GET", "/v1/status", nil, nil); err == nil {
		t.Error("wrong token accepted")
	}
	wrong.Close()

	c.signal(t, syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	c.signal(t, syscall.SIGTERM)
	if err := c.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}

	logs := c.stderr.String()
	if !strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "component=relay") {
		t.Fatalf("the run logged too little to mean anything:\n%s", logs)
	}
	gwInternal := inlineKey(sess.Internal.Crypto)
	gwCloud := inlineKey(sess.Cloud.Crypto)
	gwRekey := inlineKey(rekey.Crypto)
	if gwInternal == "" || gwCloud == "" || gwRekey == "" {
		t.Fatalf("gateway returned no keys: %+v %+v", sess, rekey)
	}
	secrets := map[string]string{
		"static user password":      userPass,
		"REST shared secret":        restSecret,
		"REST password":             restPass,
		"generated trial password":  demoPass,
		"control token":             token,
		"internal peer key":         inInline,
		"cloud peer key":            cloudInline,
		"gateway internal key":      gwInternal,
		"gateway cloud key":         gwCloud,
		"gateway cloud key (rekey)": gwRekey,
		"raw internal key (hex)":    hex.EncodeToString(internalKey),
	}
	for name, s := range secrets {
		// Any 16-character window of a secret is enough to give it away.
		for i := 0; i+16 <= len(s); i += 8 {
			if strings.Contains(logs, s[i:i+16]) {
				t.Errorf("the logs contain the %s", name)
				break
			}
		}
	}
	if strings.Count(c.stdout.String(), demoPass) != 1 {
		t.Errorf("the generated password is printed %d times on the console, want once", strings.Count(c.stdout.String(), demoPass))
	}
	if os.Getenv("MEDIAEDGE_TEST_SHOW_LOGS") != "" {
		t.Log(logs)
	}
}

// inlineKey extracts the base64 key||salt of an a=crypto line.
func inlineKey(line string) string {
	_, rest, ok := strings.Cut(line, "inline:")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "| "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}
