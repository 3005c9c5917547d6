package steer

import (
	"testing"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

var steerObject = testutil.BPFObject{
	Ident: "steer", Source: "bpf/steer.c", Package: "steer",
	Types: []string{"port_key", "port_val"},
}

// TestSourceHashRecorded fails when bpf/steer.c changed without `make bpf`.
func TestSourceHashRecorded(t *testing.T) { testutil.CheckBPFSourceHash(t, steerObject) }

// TestObjectMatchesSource rebuilds the object and bindings with bpf2go and
// compares them byte for byte with the committed ones.
func TestObjectMatchesSource(t *testing.T) { testutil.CheckBPFObject(t, steerObject) }
