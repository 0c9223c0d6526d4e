package arbiter

import "time"

// Reset ends every live request without arbitrating again, for a device
// that is gone or starts again from clear surfaces: no command is
// returned. Each request hears its last event: one on the device is
// hidden (with cleared, or the reason it was already leaving with), one
// waiting to be restored is hidden with cleared, any other ends with
// cleared. The surfaces are then as after New (the boot phase is kept).
func (a *Arbiter) Reset(now time.Time) Output {
	a.begin(now)
	for _, s := range a.order {
		if c := s.current; c != nil {
			reason := c.gone
			if reason == "" {
				reason = ReasonCleared
			}
			delete(a.live, c.req.ID)
			a.emit(c, Hidden, reason, nil)
		}
		for _, w := range s.waiting {
			a.finish(w, ReasonCleared)
		}
		*s = surface{decl: s.decl}
	}
	return a.end()
}
