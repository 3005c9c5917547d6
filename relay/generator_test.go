package relay

import (
	"testing"

	"github.com/pion/turn/v5"
)

// TestServerIsNotAGenerator keeps pion's callbacks off the exported
// surface: the generator is its own unexported type.
func TestServerIsNotAGenerator(t *testing.T) {
	if _, ok := any((*Server)(nil)).(turn.RelayAddressGenerator); ok {
		t.Fatal("*relay.Server implements turn.RelayAddressGenerator: its Allocate* methods are exported API")
	}
}
