package fastpath

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestProgramEnforcesCap runs capped entries through BPF_PROG_TEST_RUN:
// at 8 kbit/s (1,000 bytes a second, a 16 KiB burst) sixteen 1,000-byte
// datagrams pass toward the peer and the seventeenth is dropped and
// counted; a second channel of the same allocation shares the emptied
// bucket; the other direction has its own; a second later one more
// datagram's worth has come back; and the buckets go with the last entry.
func TestProgramEnforcesCap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: running the BPF program needs root (CAP_BPF)")
	}
	fw := loadForTestRun(t)
	for _, e := range []Entry{fuzzEntry, fuzzEntry6} {
		t.Run(e.Client.Addr().String(), func(t *testing.T) {
			a := e
			a.Bitrate = 8000
			b := a
			b.Peer = netip.AddrPortFrom(a.Peer.Addr(), a.Peer.Port()+1)
			b.Channel = a.Channel - 1
			for _, x := range []Entry{a, b} {
				if err := fw.Add(x); err != nil {
					t.Fatal(err)
				}
			}
			payload := make([]byte, 1000)
			run := func(frame []byte) bool { // forwarded?
				t.Helper()
				opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+64)}
				ret, err := fw.objs.TurnfwdIngress.Run(&opts)
				if err != nil {
					t.Fatal(err)
				}
				if ret != 2 && string(opts.DataOut) == string(frame) {
					t.Fatalf("verdict %d and the frame unchanged: the entry was not found", ret)
				}
				return ret != 2
			}
			toPeer := func(x Entry) bool {
				return run(udpFrame(x.Client, x.Listener, channelData(x.Channel, payload), true))
			}
			for i := range 16 {
				if !toPeer(a) {
					t.Fatalf("datagram %d of 16 within the burst was dropped", i+1)
				}
			}
			if toPeer(a) {
				t.Fatal("the 17th datagram passed: 17,000 bytes through a 16 KiB burst")
			}
			if toPeer(b) {
				t.Fatal("the allocation's second channel did not share the emptied bucket")
			}
			// Another CPU refilled a moment after this one read the clock:
			// its later timestamp must not wrap into a full refill.
			var bk turnfwdBucket
			id := bucketID(a.Relay, 0)
			if err := fw.objs.Buckets.Lookup(id, &bk); err != nil {
				t.Fatal(err)
			}
			var ts unix.Timespec
			if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
				t.Fatal(err)
			}
			bk.Last = uint64(ts.Nano()) + uint64(50*time.Millisecond)
			if err := fw.objs.Buckets.Update(id, &bk, ebpf.UpdateExist); err != nil {
				t.Fatal(err)
			}
			if toPeer(a) {
				t.Fatal("a refill stamped later than the program's clock filled the bucket")
			}
			if !run(udpFrame(a.Peer, a.Relay, payload, true)) {
				t.Fatal("toward the client the first datagram was dropped: the directions share a bucket")
			}
			time.Sleep(1100 * time.Millisecond)
			if !toPeer(a) {
				t.Fatal("a second later, 1,000 bytes at 1,000 bytes a second did not pass")
			}
			if toPeer(a) {
				t.Fatal("a second later, 2,000 bytes passed at 1,000 bytes a second")
			}
			ca, _ := fw.Counters(a)
			cb, _ := fw.Counters(b)
			if ca.ToPeerPackets != 17 || ca.ToPeerDropped != 3 || ca.ToClientPackets != 1 || cb.ToPeerDropped != 1 {
				t.Errorf("counters %+v and %+v, want 17 forwarded and 3 dropped to the peer, 1 to the client; 1 dropped on the second channel", ca, cb)
			}
			buckets := func() int {
				n := 0
				var k uint32
				var v turnfwdBucket
				it := fw.objs.Buckets.Iterate()
				for it.Next(&k, &v) {
					n++
				}
				return n
			}
			if _, err := fw.Remove(a); err != nil {
				t.Fatal(err)
			}
			if n := buckets(); n != 2 {
				t.Errorf("%d buckets while a capped entry remains, want 2", n)
			}
			if _, err := fw.Remove(b); err != nil {
				t.Fatal(err)
			}
			if n := buckets(); n != 0 {
				t.Errorf("%d buckets after the last capped entry went, want 0", n)
			}
		})
	}
}

// TestProgramEnforcesUserCap: a per-user cap is one bucket pair for all
// of a user's allocations. At 8 kbit/s for alice, sixteen 1,000-byte
// datagrams pass through her first allocation, the next is dropped there
// and on her second allocation, while bob's allocation has its own; her
// buckets go with her last entry.
func TestProgramEnforcesUserCap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: running the BPF program needs root (CAP_BPF)")
	}
	fw := loadForTestRun(t)
	alloc := func(i int, user string) Entry {
		e := fuzzEntry6
		e.Client = netip.AddrPortFrom(e.Client.Addr(), uint16(41000+i))
		e.Relay = netip.AddrPortFrom(e.Relay.Addr(), uint16(51000+i))
		e.Channel = 0x4100
		e.User, e.UserBitrate = user, 8000
		if err := fw.Add(e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	a1, a2, b := alloc(0, "alice"), alloc(1, "alice"), alloc(2, "bob")
	payload := make([]byte, 1000)
	toPeer := func(e Entry) bool {
		t.Helper()
		frame := udpFrame(e.Client, e.Listener, channelData(e.Channel, payload), true)
		opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+64)}
		ret, err := fw.objs.TurnfwdIngress.Run(&opts)
		if err != nil {
			t.Fatal(err)
		}
		if ret != 2 && string(opts.DataOut) == string(frame) {
			t.Fatalf("verdict %d and the frame unchanged: the entry was not found", ret)
		}
		return ret != 2
	}
	for i := range 16 {
		if !toPeer(a1) {
			t.Fatalf("datagram %d of 16 within alice's burst was dropped", i+1)
		}
	}
	if toPeer(a1) || toPeer(a2) {
		t.Fatal("alice's cap let a 17th datagram through, on one allocation or the other")
	}
	if !toPeer(b) {
		t.Fatal("bob's allocation was held to alice's cap")
	}
	c1, _ := fw.Counters(a1)
	c2, _ := fw.Counters(a2)
	if c1.ToPeerPackets != 16 || c1.ToPeerDropped != 1 || c2.ToPeerDropped != 1 {
		t.Errorf("alice's counters %+v and %+v, want 16 forwarded and 1 dropped, and 1 dropped", c1, c2)
	}
	buckets := func() int {
		n := 0
		var k uint32
		var v turnfwdBucket
		for it := fw.objs.Buckets.Iterate(); it.Next(&k, &v); {
			n++
		}
		return n
	}
	if n := buckets(); n != 4 {
		t.Errorf("%d buckets for two users, want 4", n)
	}
	for i, e := range []Entry{a1, a2, b} {
		if _, err := fw.Remove(e); err != nil {
			t.Fatal(err)
		}
		if want := []int{4, 2, 0}[i]; buckets() != want {
			t.Errorf("after removing entry %d: %d buckets, want %d", i+1, buckets(), want)
		}
	}
}

// TestTakeFaults: the per-CPU fault counters are added up and handed out
// once each (the relay adds them to its send_error drops).
func TestTakeFaults(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: loading the BPF program needs root (CAP_BPF)")
	}
	fw := loadForTestRun(t)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	set := func(v uint64) {
		t.Helper()
		per := make([]uint64, cpus)
		per[0], per[cpus-1] = v, v
		if err := fw.objs.Faults.Put(uint32(0), per); err != nil {
			t.Fatal(err)
		}
	}
	if n := fw.TakeFaults(); n != 0 {
		t.Fatalf("%d faults before any", n)
	}
	set(3)
	want := uint64(6)
	if cpus == 1 {
		want = 3
	}
	if n := fw.TakeFaults(); n != want {
		t.Fatalf("TakeFaults = %d, want %d", n, want)
	}
	if n := fw.TakeFaults(); n != 0 {
		t.Fatalf("TakeFaults handed the same faults out twice: %d", n)
	}
	set(5)
	if n := fw.TakeFaults(); n != want/3*2 {
		t.Fatalf("TakeFaults = %d after two more per CPU, want %d", n, want/3*2)
	}
}
