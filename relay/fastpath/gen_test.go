package fastpath

import (
	"testing"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

var turnfwdObject = testutil.BPFObject{
	Ident: "turnfwd", Source: "bpf/turnfwd.c", Package: "fastpath",
	Types: []string{"c2p_key", "p2c_key", "fwd_val"},
}

// TestSourceHashRecorded fails when bpf/turnfwd.c changed without `make bpf`.
func TestSourceHashRecorded(t *testing.T) { testutil.CheckBPFSourceHash(t, turnfwdObject) }

// TestObjectMatchesSource rebuilds the object and bindings with bpf2go and
// compares them byte for byte with the committed ones.
func TestObjectMatchesSource(t *testing.T) { testutil.CheckBPFObject(t, turnfwdObject) }
