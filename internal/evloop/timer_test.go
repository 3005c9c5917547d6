package evloop

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// fired records the order in which test timers fire.
type fired []string

func newTimer(name string, log *fired) *Timer {
	t := &Timer{}
	t.Init(func(int64) { *log = append(*log, name) })
	return t
}

// TestTimersOrder: timers fire in deadline order, those due at the same
// time in the order they were scheduled; a moved timer takes its new
// place; nothing fires before its deadline.
func TestTimersOrder(t *testing.T) {
	var q timers
	var log fired
	for _, tc := range []struct {
		name string
		when int64
	}{{"c", 30}, {"a", 10}, {"b1", 20}, {"late", 100}, {"b2", 20}, {"moved", 5}} {
		q.schedule(newTimer(tc.name, &log), tc.when)
	}
	m := q.h[slices.IndexFunc(q.h, func(x *Timer) bool { return x.when == 5 })]
	q.schedule(m, 25) // moved from 5 to 25: after b1, b2
	if n := q.run(9, 100); n != 0 || len(log) != 0 {
		t.Fatalf("at 9: fired %v", log)
	}
	q.run(30, 100)
	if want := []string{"a", "b1", "b2", "moved", "c"}; !slices.Equal(log, want) {
		t.Errorf("fired %v, want %v", log, want)
	}
	if when, ok := q.next(); !ok || when != 100 {
		t.Errorf("next = %d, %v; want 100", when, ok)
	}
}

// TestTimersCancel: a cancelled timer never fires and cancels once; a
// timer can be scheduled again after it fired or was cancelled; a timer's
// function may cancel another one due in the same run, or reschedule
// itself.
func TestTimersCancel(t *testing.T) {
	var q timers
	var log fired
	a, b, c := newTimer("a", &log), newTimer("b", &log), newTimer("c", &log)
	q.schedule(a, 10)
	q.schedule(b, 20)
	q.schedule(c, 30)
	if !q.cancel(b) || q.cancel(b) || b.Pending() {
		t.Fatal("cancel of a pending timer: want true once, then false")
	}
	// a cancels c, which is due in the same run, and reschedules itself.
	a.Init(func(now int64) {
		log = append(log, "a")
		q.cancel(c)
		if now < 50 {
			q.schedule(a, now+100)
		}
	})
	q.run(40, 100)
	if want := []string{"a"}; !slices.Equal(log, want) {
		t.Errorf("fired %v, want %v", log, want)
	}
	if !a.Pending() || a.When() != 140 || c.Pending() {
		t.Errorf("a pending %v at %d, c pending %v; want a at 140, c cancelled", a.Pending(), a.When(), c.Pending())
	}
	q.schedule(b, 150)
	q.run(200, 100)
	if want := []string{"a", "a", "b"}; !slices.Equal(log, want) {
		t.Errorf("fired %v, want %v", log, want)
	}
	if len(q.h) != 0 {
		t.Errorf("%d timers left", len(q.h))
	}
}

// TestTimersBudget: a round fires at most its budget; the rest fire in
// the next rounds, in order. A timer that reschedules itself as due again
// cannot hold a round longer than the budget.
func TestTimersBudget(t *testing.T) {
	var q timers
	var log fired
	for i := range 100 {
		q.schedule(newTimer(fmt.Sprint(i), &log), int64(i))
	}
	if n := q.run(1000, 64); n != 64 || len(log) != 64 {
		t.Fatalf("first round fired %d (%d logged), want 64", n, len(log))
	}
	if n := q.run(1000, 64); n != 36 {
		t.Fatalf("second round fired %d, want 36", n)
	}
	for i, name := range log {
		if name != fmt.Sprint(i) {
			t.Fatalf("timer %d fired as %s", i, name)
		}
	}
	spin := &Timer{}
	runs := 0
	spin.Init(func(now int64) { runs++; q.schedule(spin, now) })
	q.schedule(spin, 0)
	if n := q.run(10, 8); n != 8 || runs != 8 {
		t.Errorf("a timer due again at once ran %d times (%d fired), want the budget 8", runs, n)
	}
}

// TestTimersRandom checks the heap against a sorted list over random
// schedules, moves and cancels.
func TestTimersRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var q timers
	var log fired
	ts := make([]*Timer, 200)
	for i := range ts {
		ts[i] = newTimer(fmt.Sprint(i), &log)
	}
	type entry struct {
		when, seq int64
		name      string
	}
	for range 2000 {
		tm := ts[r.IntN(len(ts))]
		if r.IntN(4) == 0 {
			q.cancel(tm)
		} else {
			q.schedule(tm, r.Int64N(50))
		}
	}
	var want []entry
	for i, tm := range ts {
		if tm.Pending() {
			want = append(want, entry{tm.when, int64(tm.seq), fmt.Sprint(i)})
		}
	}
	slices.SortFunc(want, func(a, b entry) int {
		if a.when != b.when {
			return int(a.when - b.when)
		}
		return int(a.seq - b.seq)
	})
	q.run(50, len(ts))
	if len(log) != len(want) {
		t.Fatalf("fired %d, want %d", len(log), len(want))
	}
	for i := range want {
		if log[i] != want[i].name {
			t.Fatalf("fired #%d %s, want %s", i, log[i], want[i].name)
		}
	}
}

// TestTimersNoAlloc: scheduling, moving, cancelling and firing allocate
// nothing once the heap has grown.
func TestTimersNoAlloc(t *testing.T) {
	var q timers
	ts := make([]Timer, 64)
	count := 0
	for i := range ts {
		ts[i].Init(func(int64) { count++ })
	}
	now := int64(0)
	cycle := func() {
		for i := range ts {
			q.schedule(&ts[i], now+int64(i%7))
		}
		q.schedule(&ts[3], now+100)
		q.cancel(&ts[5])
		now += 10
		q.run(now, len(ts))
		q.cancel(&ts[3])
	}
	cycle()
	if a := testing.AllocsPerRun(100, cycle); a != 0 {
		t.Errorf("%v allocations per cycle, want 0", a)
	}
	if count == 0 {
		t.Error("no timer fired")
	}
}
