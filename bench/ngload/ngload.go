// Package ngload drives offer/answer/delete round trips at a set rate
// against any server of rtpengine's ng protocol (mediaedge's gateway.ng
// listener, rtpengine) and reports the round trips' percentiles.
package ngload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
)

// Options shape one run.
type Options struct {
	Server netip.AddrPort // the ng server
	Calls  int            // calls set up and deleted (measured); > 0
	Rate   float64        // calls set up a second; 0: one after the other, as fast as the server answers
	Live   int            // other calls set up first and kept up during the run (then deleted)
	// MaxTime bounds the whole run (0: one hour).
	MaxTime time.Duration
	// Prefix makes the call-ids unique to this run (default: the time).
	Prefix string
}

// Result are the measured round trips: one per request (offer, answer,
// delete), each from the request's first send to its reply.
type Result struct {
	Calls, Requests, Errors int
	P50, P90, P99, Max      time.Duration
	Elapsed                 time.Duration
	FirstError              string
}

// Run sets up o.Live calls, then o.Calls calls (offer, answer, delete
// each) at o.Rate, then deletes the live calls. A request the server
// refuses or never answers (three tries, a second apart) counts as an
// error and its call is skipped; the run stops at the first error while
// setting up the live calls.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Calls <= 0 || o.Rate < 0 || o.Live < 0 {
		return nil, errors.New("ngload: want calls > 0, rate >= 0, live >= 0")
	}
	if o.MaxTime <= 0 {
		o.MaxTime = time.Hour
	}
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("ngload-%x", time.Now().UnixNano())
	}
	ctx, cancel := context.WithTimeout(ctx, o.MaxTime)
	defer cancel()
	c, err := sut.DialNG(o.Server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Call(ctx, map[string]any{"command": "ping"}); err != nil {
		return nil, fmt.Errorf("ngload: ping %s: %w", o.Server, err)
	}
	offer, answer, err := sdps()
	if err != nil {
		return nil, err
	}
	live := func(i int) string { return fmt.Sprintf("%s-live-%d", o.Prefix, i) }
	for i := 0; i < o.Live; i++ {
		for _, m := range []map[string]any{
			{"command": "offer", "call-id": live(i), "from-tag": "a", "sdp": offer, "transport-protocol": "RTP/SAVP"},
			{"command": "answer", "call-id": live(i), "from-tag": "a", "to-tag": "b", "sdp": answer, "transport-protocol": "RTP/SAVP"},
		} {
			if _, err := c.Call(ctx, m); err != nil {
				deleteLive(c, live, i+1)
				return nil, fmt.Errorf("ngload: live call %d: %w", i, err)
			}
		}
	}
	defer deleteLive(c, live, o.Live)

	r := &Result{Calls: o.Calls}
	rtt := make([]time.Duration, 0, 3*o.Calls)
	start := time.Now()
	for i := 0; i < o.Calls && ctx.Err() == nil; i++ {
		if o.Rate > 0 {
			t := time.NewTimer(time.Until(start.Add(time.Duration(float64(i) * float64(time.Second) / o.Rate))))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		id := fmt.Sprintf("%s-%d", o.Prefix, i)
		for _, m := range []map[string]any{
			{"command": "offer", "call-id": id, "from-tag": "a", "sdp": offer, "transport-protocol": "RTP/SAVP"},
			{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": answer, "transport-protocol": "RTP/SAVP"},
			{"command": "delete", "call-id": id, "from-tag": "a"},
		} {
			t0 := time.Now()
			_, err := c.Call(ctx, m)
			r.Requests++
			if err != nil {
				r.Errors++
				if r.FirstError == "" {
					r.FirstError = err.Error()
				}
				if m["command"] != "delete" {
					_, _ = c.Call(ctx, map[string]any{"command": "delete", "call-id": id, "from-tag": "a"})
				}
				break
			}
			rtt = append(rtt, time.Since(t0))
		}
	}
	r.Elapsed = time.Since(start)
	if err := ctx.Err(); err != nil && len(rtt) == 0 {
		return nil, err
	}
	if len(rtt) > 0 {
		slices.Sort(rtt)
		q := func(p int) time.Duration { return rtt[min(len(rtt)-1, len(rtt)*p/100)] }
		r.P50, r.P90, r.P99, r.Max = q(50), q(90), q(99), rtt[len(rtt)-1]
	}
	return r, nil
}

// deleteLive deletes the first n live calls, best effort.
func deleteLive(c *sut.NGClient, id func(int) string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		_, _ = c.Call(ctx, map[string]any{"command": "delete", "call-id": id(i), "from-tag": "a"})
	}
}

// sdps are an offer and an answer with SDES (AES_CM_128_HMAC_SHA1_80, a
// fresh key each) and rtcp-mux, from 127.0.0.1.
func sdps() (offer, answer string, err error) {
	s80, err := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		return "", "", err
	}
	one := func(port int) (string, error) {
		k, err := srtpcheck.NewKey(s80)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
			"m=audio %d RTP/SAVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtcp-mux\r\n%s\r\n", port, k.CryptoLine()), nil
	}
	if offer, err = one(30000); err != nil {
		return "", "", err
	}
	answer, err = one(30002)
	return offer, answer, err
}

// WriteTable prints r for people.
func (r *Result) WriteTable(w io.Writer) error {
	_, err := fmt.Fprintf(w, "calls\trequests\terrors\telapsed\tp50\tp90\tp99\tmax\n%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n",
		r.Calls, r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond), us(r.P50), us(r.P90), us(r.P99), us(r.Max))
	if err == nil && r.FirstError != "" {
		_, err = fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	return err
}

func us(d time.Duration) string { return fmt.Sprintf("%dµs", d.Microseconds()) }
