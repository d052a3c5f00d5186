package flowgen

import "math/rand/v2"

// Fork returns a generator of the same cluster (pods, services, external
// peers and conversations) drawing its flows from another random stream:
// one per goroutine generates the same kind of traffic in parallel.
func (g *Gen) Fork(seed uint64) *Gen {
	f := *g
	f.rnd = rand.New(rand.NewPCG(seed, 2))
	f.n = seed << 48 // flow IDs of different forks do not collide
	return &f
}
