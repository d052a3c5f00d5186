package flow

import (
	"encoding/json"
	"net/http"
	"time"
)

// FollowPath is the streaming endpoint of `palisade flows follow`.
const FollowPath = "/api/v1/flows/follow"

// HandleFollow streams the flows matching ?filter= as they appear
// (newline-delimited JSON, one flow per line; an empty line every 10 s
// keeps idle connections alive), until the client goes away. A bad filter
// is answered like a search's, with its position.
func (s *Service) HandleFollow(w http.ResponseWriter, r *http.Request) {
	f, err := s.Follow(r.URL.Query().Get("filter"))
	if err != nil {
		writeFilterError(w, err)
		return
	}
	defer s.Unfollow(f)
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case x := <-f.C:
			if enc.Encode(&x) != nil {
				return
			}
			// Whatever else is waiting goes in the same write.
			for more := true; more; {
				select {
				case x := <-f.C:
					if enc.Encode(&x) != nil {
						return
					}
				default:
					more = false
				}
			}
		case <-tick.C:
			if _, err := w.Write([]byte("\n")); err != nil {
				return
			}
		}
		if fl != nil {
			fl.Flush()
		}
	}
}
