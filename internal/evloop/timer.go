package evloop

// Timer is a deadline on a Loop's clock with a function that runs on the
// loop's goroutine when the deadline has passed, like time.AfterFunc
// without a goroutine or an allocation: embed it in the object it serves,
// Init it once, then Schedule and Cancel it through the Loop from the
// loop's goroutine only. A Timer fires once per Schedule; its function may
// schedule it again (a periodic timer) or schedule and cancel others.
type Timer struct {
	f    func(now int64)
	when int64
	seq  uint64 // schedule order: timers due at the same time fire in it
	idx  int    // position in the heap + 1; 0 when not scheduled
}

// Init sets the function the timer runs; call it once, before the first
// Schedule.
func (t *Timer) Init(f func(now int64)) { t.f = f }

// Pending reports whether the timer is scheduled and has not fired.
func (t *Timer) Pending() bool { return t.idx != 0 }

// When returns the deadline of a pending timer.
func (t *Timer) When() int64 { return t.when }

// timers is a binary min-heap of pending timers ordered by deadline, then
// by schedule order. Owned by one goroutine; its slice grows to the most
// timers pending at once and is reused, so steady use allocates nothing.
type timers struct {
	h   []*Timer
	seq uint64
}

func (q *timers) less(i, j int) bool {
	a, b := q.h[i], q.h[j]
	return a.when < b.when || a.when == b.when && a.seq < b.seq
}

func (q *timers) swap(i, j int) {
	q.h[i], q.h[j] = q.h[j], q.h[i]
	q.h[i].idx, q.h[j].idx = i+1, j+1
}

func (q *timers) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *timers) down(i int) {
	n := len(q.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			return
		}
		q.swap(i, m)
		i = m
	}
}

// schedule sets t's deadline to when, scheduling it or moving it.
func (q *timers) schedule(t *Timer, when int64) {
	q.seq++
	t.when, t.seq = when, q.seq
	if t.idx != 0 {
		i := t.idx - 1
		q.up(i)
		q.down(t.idx - 1)
		return
	}
	q.h = append(q.h, t)
	t.idx = len(q.h)
	q.up(len(q.h) - 1)
}

// cancel unschedules t; it reports whether t was pending.
func (q *timers) cancel(t *Timer) bool {
	if t.idx == 0 {
		return false
	}
	i, last := t.idx-1, len(q.h)-1
	if i != last {
		q.swap(i, last)
	}
	q.h[last] = nil
	q.h = q.h[:last]
	t.idx = 0
	if i != last {
		q.down(i)
		q.up(i)
	}
	return true
}

// next returns the earliest deadline; ok is false with no timer pending.
func (q *timers) next() (when int64, ok bool) {
	if len(q.h) == 0 {
		return 0, false
	}
	return q.h[0].when, true
}

// due reports whether a timer's deadline is at or before now.
func (q *timers) due(now int64) bool { return len(q.h) > 0 && q.h[0].when <= now }

// run fires, in deadline order, up to budget timers whose deadline is at
// or before now and returns how many fired. A timer is unscheduled before
// its function runs, which may schedule it again; one scheduled due again
// during run fires in this run if the budget allows, so the budget is what
// bounds a round.
func (q *timers) run(now int64, budget int) int {
	fired := 0
	for fired < budget && q.due(now) {
		t := q.h[0]
		q.cancel(t)
		fired++
		t.f(now)
	}
	return fired
}
