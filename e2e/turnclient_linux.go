package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pion/turn/v5"
)

// turnAllocateTimeout bounds the Allocate exchange (two round trips and the
// retransmissions of a lost one).
const turnAllocateTimeout = 10 * time.Second

// TURNClient is a pion/turn/v5 client whose socket lives in the client
// namespace, with one UDP allocation on mediaedge's relay. Close releases
// the allocation and the socket.
type TURNClient struct {
	// set in DialTURN, never changed
	conn   net.PacketConn
	client *turn.Client
	// Relay is the allocation: what the client writes to reach peers
	// and reads their packets from.
	Relay net.PacketConn
}

// DialTURN allocates on the relay at server from inside ns, asking for a
// relayed address of family (RFC 6156) whatever the family of the client's
// own socket.
func DialTURN(ctx context.Context, ns *Netns, server, user, password, realm string, family turn.RequestedAddressFamily) (*TURNClient, error) {
	tc := &TURNClient{}
	err := ns.Do(func() error {
		c, err := net.ListenPacket("udp4", net.JoinHostPort(ClientAddr.String(), "0"))
		if err != nil {
			return err
		}
		tc.conn = c
		tc.client, err = turn.NewClient(&turn.ClientConfig{
			STUNServerAddr: server,
			TURNServerAddr: server,
			Username:       user,
			Password:       password,
			Realm:          realm,
			Software:       "mediaedge-e2e",
			Conn:           c,

			RequestedAddressFamily: family,
		})
		if err != nil {
			return err
		}
		return tc.client.Listen()
	})
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("e2e: TURN client: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, turnAllocateTimeout)
	defer cancel()
	tc.Relay, err = tc.client.AllocateWithContext(actx)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("e2e: TURN allocate on %s: %w", server, err)
	}
	return tc, nil
}

// Close releases the allocation (a Refresh with lifetime 0) and closes the
// socket. It is idempotent.
func (tc *TURNClient) Close() {
	if tc.Relay != nil {
		_ = tc.Relay.Close()
		tc.Relay = nil
	}
	if tc.client != nil {
		tc.client.Close()
		tc.client = nil
	}
	if tc.conn != nil {
		_ = tc.conn.Close()
		tc.conn = nil
	}
}

func turnServerAddr() string {
	return net.JoinHostPort(EdgeLANAddr.String(), strconv.Itoa(TURNPort))
}
