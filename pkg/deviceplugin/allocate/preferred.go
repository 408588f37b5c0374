package allocate

import (
	"fmt"
	"slices"
)

// DefaultBudget is the number of search nodes Preferred visits before it
// settles for the best set found so far (which is never worse than the
// greedy answer it starts from). 16 devices choose 8 need about 2,000.
const DefaultBudget = 50_000

// Request is one container's preferred-allocation question, as the kubelet
// asks it: choose Size devices from Available, including all of MustInclude.
type Request struct {
	Available   []string
	MustInclude []string
	Size        int
	// Budget bounds the search in visited nodes; 0 means DefaultBudget.
	Budget int
}

// Preferred returns the IDs of the Size devices of req.Available, including
// req.MustInclude, whose sum of pairwise distances is smallest, in the
// Topology's order. An error says why no answer can be given (an unknown
// ID, a size that cannot be met); the caller answers the kubelet with an
// empty preference then, never with the error.
func (t *Topology) Preferred(req Request) ([]string, error) {
	n := len(t.ids)
	inAvail := make([]bool, n)
	avail := make([]int, 0, len(req.Available))
	for _, id := range req.Available {
		i, ok := t.index[id]
		if !ok {
			return nil, fmt.Errorf("choose preferred devices: available device %q is not advertised", id)
		}
		if !inAvail[i] {
			inAvail[i] = true
			avail = append(avail, i)
		}
	}
	chosen := make([]int, 0, req.Size)
	isMust := make([]bool, n)
	for _, id := range req.MustInclude {
		i, ok := t.index[id]
		if !ok || !inAvail[i] {
			return nil, fmt.Errorf("choose preferred devices: must-include device %q is not available", id)
		}
		if !isMust[i] {
			isMust[i] = true
			chosen = append(chosen, i)
		}
	}
	switch {
	case req.Size <= 0:
		return nil, fmt.Errorf("choose preferred devices: size %d, want at least 1", req.Size)
	case req.Size > len(avail):
		return nil, fmt.Errorf("choose preferred devices: size %d exceeds the %d available", req.Size, len(avail))
	case len(chosen) > req.Size:
		return nil, fmt.Errorf("choose preferred devices: %d must-include devices exceed size %d", len(chosen), req.Size)
	}
	slices.Sort(avail)
	cand := make([]int, 0, len(avail))
	for _, i := range avail {
		if !isMust[i] {
			cand = append(cand, i)
		}
	}
	need := req.Size - len(chosen)
	if need == 0 {
		return t.names(chosen), nil
	}
	if need == len(cand) {
		return t.names(append(chosen, cand...)), nil
	}
	best, bestCost := t.greedy(chosen, cand, need)
	budget := req.Budget
	if budget <= 0 {
		budget = DefaultBudget
	}
	s := &search{t: t, cand: cand, budget: budget, best: best, bestCost: bestCost}
	added := make([]int, len(cand))
	for k, c := range cand {
		for _, m := range chosen {
			added[k] += int(t.dist[c*n+m])
		}
	}
	s.walk(slices.Clone(chosen), t.cost(chosen), 0, need, added)
	return t.names(s.best), nil
}

// greedy grows the must-include set (or, without one, each single
// candidate) by the candidate that adds least, and keeps the cheapest
// result: a good first bound for the exact search.
func (t *Topology) greedy(must, cand []int, need int) ([]int, int) {
	n := len(t.ids)
	seeds := [][]int{must}
	if len(must) == 0 {
		seeds = seeds[:0]
		for _, c := range cand {
			seeds = append(seeds, []int{c})
		}
	}
	var best []int
	bestCost := -1
	used := make([]bool, n)
	for _, seed := range seeds {
		set := slices.Clone(seed)
		clear(used)
		for _, i := range set {
			used[i] = true
		}
		for len(set) < len(must)+need {
			pick, pickCost := -1, 0
			for _, c := range cand {
				if used[c] {
					continue
				}
				a := 0
				for _, m := range set {
					a += int(t.dist[c*n+m])
				}
				if pick < 0 || a < pickCost {
					pick, pickCost = c, a
				}
			}
			used[pick] = true
			set = append(set, pick)
		}
		if c := t.cost(set); bestCost < 0 || c < bestCost {
			best, bestCost = set, c
		}
	}
	return best, bestCost
}

// search is a depth-first branch and bound over the candidates in order.
type search struct {
	t        *Topology
	cand     []int
	budget   int
	best     []int
	bestCost int
}

// walk extends set (of cost cur) with need more candidates from cand[from:];
// added[k] is what cand[k] would add to set.
func (s *search) walk(set []int, cur, from, need int, added []int) {
	if s.budget <= 0 {
		return
	}
	s.budget--
	if need == 0 {
		if cur < s.bestCost {
			s.best, s.bestCost = slices.Clone(set), cur
		}
		return
	}
	rest := len(s.cand) - from
	if rest < need {
		return
	}
	// Lower bound: the need cheapest additions to set, plus the least the
	// newcomers can cost among themselves.
	low := slices.Clone(added[from:])
	slices.Sort(low)
	bound := cur + need*(need-1)/2*SameSwitch
	for _, a := range low[:need] {
		bound += a
	}
	if bound >= s.bestCost {
		return
	}
	n := len(s.t.ids)
	next := make([]int, len(added))
	for k := from; k <= len(s.cand)-need; k++ {
		c := s.cand[k]
		for j := k + 1; j < len(s.cand); j++ {
			next[j] = added[j] + int(s.t.dist[c*n+s.cand[j]])
		}
		s.walk(append(set, c), cur+added[k], k+1, need-1, next)
		if s.budget <= 0 {
			return
		}
	}
}

func (t *Topology) names(idx []int) []string {
	idx = slices.Clone(idx)
	slices.Sort(idx)
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = t.ids[i]
	}
	return out
}
