package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// publishREST publishes like publish, from cfg.Publishers goroutines, each
// with its own keep-alive HTTP connection, over the REST API backends use
// (POST /api/v1/channels/{topic}/publish, one request in flight each). pub
// holds the counters (outstanding, acked, maxOffset); its token is that of
// connection index pub.index and on. With rate 0 the publishers share the
// in-flight window of publish; with a rate, each publishes rate/Publishers
// per second.
func (r *benchRun) publishREST(ctx context.Context, pub *benchConn, subs int64, deadline time.Time) {
	u := (&url.URL{Scheme: "http", Host: r.cfg.target,
		Path: "/api/v1/channels/" + r.cfg.Topic + "/publish", RawPath: "/api/v1/channels/" + url.PathEscape(r.cfg.Topic) + "/publish"}).String()
	pad := bytes.Repeat([]byte{'x'}, max(0, r.cfg.Size-len(`{"ts":1700000000000000000,"pad":""}`)))
	var seq atomic.Int64
	window := int64(r.cfg.Window)
	var wg sync.WaitGroup
	for p := range r.cfg.Publishers {
		tok, err := r.d.tokens(pub.index + p)
		if err != nil {
			r.fail("publisher token: " + err.Error())
			return
		}
		auth := "Bearer " + tok
		client := &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 1,
				MaxConnsPerHost:     1,
				DisableCompression:  true,
			},
		}
		wg.Go(func() {
			defer client.CloseIdleConnections()
			var body []byte
			interval := time.Duration(0)
			if r.cfg.Rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(r.cfg.Publishers) / r.cfg.Rate)
			}
			next := time.Now()
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(deadline) {
					return
				}
				if interval > 0 {
					if now.Before(next) {
						time.Sleep(min(next.Sub(now), time.Until(deadline)))
						continue
					}
					next = next.Add(interval)
				} else if inFlight := seq.Load() - r.m.deliveries.Load()/max(subs, 1); subs > 0 && inFlight >= window {
					time.Sleep(50 * time.Microsecond)
					continue
				}
				seq.Add(1)
				body = append(body[:0], `{"data":{"ts":`...)
				body = strconv.AppendInt(body, time.Now().UnixNano(), 10)
				body = append(body, `,"pad":"`...)
				body = append(body, pad...)
				body = append(body, `"}}`...)
				pub.outstanding.Add(1)
				t0 := time.Now()
				off, err := postPublish(ctx, client, u, auth, body)
				pub.outstanding.Add(-1)
				r.ackHist.record(int64(time.Since(t0)))
				if err != nil {
					r.fail("publish over REST: " + err.Error())
					continue
				}
				for {
					cur := pub.maxOffset.Load()
					if off <= cur || pub.maxOffset.CompareAndSwap(cur, off) {
						break
					}
				}
				pub.acked.Add(1)
				if time.Now().UnixNano() < r.deadline.Load() {
					pub.ackedInTime.Add(1)
				}
				r.m.ops.Add(1)
			}
		})
	}
	wg.Wait()
}

// postPublish sends one REST publication and returns its offset.
func postPublish(ctx context.Context, client *http.Client, u, auth string, body []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %.300s", resp.Status, b)
	}
	off, ok := scanUint(b, markOffset)
	if !ok {
		return 0, fmt.Errorf("no offset in %.300s", b)
	}
	return off, nil
}
