package flow

import "sort"

// SeqRange is an inclusive range of agent sequence numbers.
type SeqRange struct{ Lo, Hi uint64 }

// SeqSet is a set of sequence numbers kept as sorted disjoint ranges: an
// agent numbers its records in order, so the set of records seen from it
// stays a handful of ranges however many records it sent.
type SeqSet struct{ r []SeqRange }

// Has reports whether seq is in the set.
func (s *SeqSet) Has(seq uint64) bool {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].Hi >= seq })
	return i < len(s.r) && s.r[i].Lo <= seq
}

// Add adds seq.
func (s *SeqSet) Add(seq uint64) { s.AddRange(SeqRange{seq, seq}) }

// AddRange adds every number of r.
func (s *SeqSet) AddRange(r SeqRange) {
	n := len(s.r)
	// Fast path: in-order appends.
	if n == 0 || s.r[n-1].Hi+1 < r.Lo {
		s.r = append(s.r, r)
		return
	}
	if s.r[n-1].Hi < r.Hi && s.r[n-1].Hi+1 >= r.Lo && s.r[n-1].Lo <= r.Lo {
		s.r[n-1].Hi = r.Hi
		return
	}
	// General case: find ranges touching r and merge them.
	i := sort.Search(n, func(i int) bool { return s.r[i].Hi+1 >= r.Lo })
	j := i
	for j < n && s.r[j].Lo <= r.Hi+1 {
		if s.r[j].Lo < r.Lo {
			r.Lo = s.r[j].Lo
		}
		if s.r[j].Hi > r.Hi {
			r.Hi = s.r[j].Hi
		}
		j++
	}
	s.r = append(s.r[:i], append([]SeqRange{r}, s.r[j:]...)...)
}

// Ranges returns the ranges of the set, in order. The slice must not be
// modified.
func (s *SeqSet) Ranges() []SeqRange { return s.r }

// Len is the number of ranges.
func (s *SeqSet) Len() int { return len(s.r) }

// Seqs maps agents to the sequence numbers of their records.
type Seqs map[string]*SeqSet

// Add adds (agent, seq).
func (s Seqs) Add(agent string, seq uint64) {
	set := s[agent]
	if set == nil {
		set = &SeqSet{}
		s[agent] = set
	}
	set.Add(seq)
}

// Has reports whether (agent, seq) is in s.
func (s Seqs) Has(agent string, seq uint64) bool {
	set := s[agent]
	return set != nil && set.Has(seq)
}

// Merge adds every number of o to s.
func (s Seqs) Merge(o Seqs) {
	for agent, set := range o {
		for _, r := range set.r {
			t := s[agent]
			if t == nil {
				t = &SeqSet{}
				s[agent] = t
			}
			t.AddRange(r)
		}
	}
}

// Covers reports whether every number of r is in the set.
func (s *SeqSet) Covers(r SeqRange) bool {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].Hi >= r.Lo })
	return i < len(s.r) && s.r[i].Lo <= r.Lo && s.r[i].Hi >= r.Hi
}

// Covers reports whether every record of o is in s.
func (s Seqs) Covers(o Seqs) bool {
	for agent, set := range o {
		t := s[agent]
		for _, r := range set.r {
			if t == nil || !t.Covers(r) {
				return false
			}
		}
	}
	return true
}
