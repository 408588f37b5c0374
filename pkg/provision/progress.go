package provision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// LinePrinter writes one logfmt-style line per update, for logs and pipes.
// Nodes that fail only because the first control plane did are said once,
// with the first of them, not once each.
type LinePrinter struct {
	mu      sync.Mutex
	w       io.Writer
	blocked map[string]bool // first control planes already said
}

// NewLinePrinter returns a LinePrinter writing to w.
func NewLinePrinter(w io.Writer) *LinePrinter { return &LinePrinter{w: w} }

// Update prints u.
func (p *LinePrinter) Update(u Update) {
	if u.BlockedBy != "" && u.Phase == PhaseFailed {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.blocked[u.BlockedBy] {
			return
		}
		if p.blocked == nil {
			p.blocked = map[string]bool{}
		}
		p.blocked[u.BlockedBy] = true
		fmt.Fprintf(p.w, "time=%s phase=failed blocked_by=%s reason=%q\n", u.Time.UTC().Format("2006-01-02T15:04:05.000Z"), u.BlockedBy,
			"every node not yet joined stops: the first control-plane node "+u.BlockedBy+" failed, so there is no cluster to join")
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "time=%s node=%s", u.Time.UTC().Format("2006-01-02T15:04:05.000Z"), u.Node)
	if u.Rack != "" {
		fmt.Fprintf(&b, " rack=%s slot=%d", u.Rack, u.Slot)
	}
	fmt.Fprintf(&b, " phase=%s attempt=%d", u.Phase, u.Attempt)
	if u.Resumed {
		b.WriteString(" resumed=true")
	}
	if u.Event != "" && u.Reason == "" {
		fmt.Fprintf(&b, " event=%q", u.Event)
	}
	if u.Reason != "" {
		fmt.Fprintf(&b, " reason=%q", u.Reason)
	}
	b.WriteByte('\n')
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, b.String())
}

// JSONPrinter writes one JSON object per update.
type JSONPrinter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewJSONPrinter returns a JSONPrinter writing to w.
func NewJSONPrinter(w io.Writer) *JSONPrinter { return &JSONPrinter{enc: json.NewEncoder(w)} }

// Update prints u.
func (p *JSONPrinter) Update(u Update) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enc.Encode(u)
}

// Table is a live terminal table of every node, redrawn in place with ANSI
// escapes. Updates are cheap; Draw renders the latest state.
type Table struct {
	mu     sync.Mutex
	w      io.Writer
	rows   map[string]*Update
	order  []string
	lines  int // lines drawn last time, to move back over them
	height int
	clock  func() time.Time
}

// NewTable returns a Table that writes to w and uses at most height lines
// (0: 40). Nodes still in progress or failed are listed first when not
// every node fits.
func NewTable(w io.Writer, height int) *Table {
	if height <= 0 {
		height = 40
	}
	return &Table{w: w, rows: map[string]*Update{}, height: height, clock: time.Now}
}

// Update records u; it does not draw.
func (t *Table) Update(u Update) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.rows[u.Node]
	if !ok {
		r = &Update{}
		t.rows[u.Node] = r
		t.order = append(t.order, u.Node)
	}
	*r = u
}

// Draw redraws the table over the previous drawing.
func (t *Table) Draw() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock()
	var buf bytes.Buffer
	if t.lines > 0 {
		fmt.Fprintf(&buf, "\x1b[%dA\r\x1b[J", t.lines)
	}
	counts := map[Phase]int{}
	for _, r := range t.rows {
		counts[r.Phase]++
	}
	var parts []string
	for _, p := range phases {
		if counts[p] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p, counts[p]))
		}
	}
	fmt.Fprintf(&buf, "%d nodes: %s\n", len(t.rows), strings.Join(parts, ", "))
	lines := 1
	// Show what needs eyes first: in progress, failed, then ready.
	names := append([]string(nil), t.order...)
	rank := func(p Phase) int {
		switch p {
		case PhaseFailed:
			return 1
		case PhaseReady:
			return 3
		case PhasePending:
			return 2
		}
		return 0
	}
	sort.SliceStable(names, func(i, j int) bool { return rank(t.rows[names[i]].Phase) < rank(t.rows[names[j]].Phase) })
	room := t.height - 2
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRACK/SLOT\tPHASE\tIN PHASE\tATTEMPT\tLAST EVENT")
	lines++
	for i, n := range names {
		if i >= room-1 && len(names)-i > 1 {
			fmt.Fprintf(tw, "... %d more\t\t\t\t\t\n", len(names)-i)
			lines++
			break
		}
		r := t.rows[n]
		loc := ""
		if r.Rack != "" {
			loc = fmt.Sprintf("%s/%d", r.Rack, r.Slot)
		}
		in := now.Sub(r.Since).Round(time.Second)
		if r.Phase.Terminal() {
			in = 0
		}
		last := r.Event
		if r.Reason != "" {
			last = r.Reason
		}
		if len(last) > 60 {
			last = last[:57] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", n, loc, r.Phase, fmtIn(in), r.Attempt, last)
		lines++
	}
	tw.Flush()
	t.lines = lines
	t.w.Write(buf.Bytes())
}

func fmtIn(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.String()
}
