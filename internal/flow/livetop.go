package flow

// topLive is Top over the stored flows and the provisional ones, as
// Search sees them: a flow both stored and provisional (emitted a moment
// ago, or updated with a late link) counts once, as its provisional
// version.
func (s *Service) topLive(q Query, by string, n int) ([]TopEntry, error) {
	l := s.live.cur.Load()
	if l == nil || len(l.flows) == 0 {
		return s.store.Top(q, by, n)
	}
	stored, err := s.store.Top(q, by, 0) // every group: provisional flows may reorder them
	if err != nil {
		return nil, err
	}
	groups := make(map[string]*TopEntry, len(stored))
	for i := range stored {
		groups[stored[i].Key] = &stored[i]
	}
	add := func(f *Flow, sign int) {
		if f.Start.UnixNano() > q.To || f.End.UnixNano() < q.From || q.Filter != nil && !q.Filter.Match(f) {
			return
		}
		k := TopKey(f, by)
		g := groups[k]
		if g == nil {
			g = &TopEntry{Key: k}
			groups[k] = g
		}
		if sign > 0 {
			g.Flows, g.Conns, g.Bytes = g.Flows+1, g.Conns+f.Conns, g.Bytes+f.FwdBytes+f.RevBytes
		} else {
			g.Flows, g.Conns, g.Bytes = g.Flows-1, g.Conns-f.Conns, g.Bytes-f.FwdBytes-f.RevBytes
		}
	}
	for i := range l.flows {
		f := &l.flows[i]
		if l.byID[f.ID] != i {
			continue // a later version of the same flow is in the set
		}
		if i >= l.pending {
			// Emitted or an update: the store may hold it (or an older
			// version) already; the stored version is replaced.
			old, ok, err := s.store.Get(f.ID)
			if err != nil {
				return nil, err
			}
			if ok {
				add(&old, -1)
			}
		}
		add(f, +1)
	}
	out := make([]TopEntry, 0, len(groups))
	for _, g := range groups {
		if g.Flows > 0 {
			out = append(out, *g)
		}
	}
	return RankTop(out, n), nil
}
