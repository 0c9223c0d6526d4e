package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkAppendMessages appends batches of 1 and 100 messages (256-byte
// bodies, unique local ids) to one session, and batches of 1 from parallel
// goroutines each with its own session of the same account (the account's
// update counter is the shared point). Reports messages/s.
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/store
func BenchmarkAppendMessages(b *testing.B) {
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			db := openDSN(b, testDSN(b, backend), Options{})
			ctx := context.Background()
			acct := newAccount(b, db)
			body := randBytes(b, 256)
			for _, batch := range []int{1, 100} {
				b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
					sid := newSession(b, db, acct)
					msgs := make([]NewMessage, batch)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						for j := range msgs {
							msgs[j] = NewMessage{LocalID: fmt.Sprintf("%d-%d", i, j), Body: body}
						}
						if _, _, err := db.AppendMessages(ctx, acct, sid, msgs); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "messages/s")
				})
			}
			b.Run("batch=1/parallel", func(b *testing.B) {
				var n atomic.Int64
				b.SetParallelism(4) // 4 × GOMAXPROCS writers
				b.RunParallel(func(pb *testing.PB) {
					sid := newSession(b, db, acct)
					for pb.Next() {
						i := n.Add(1)
						if _, _, err := db.AppendMessages(ctx, acct, sid, []NewMessage{{LocalID: fmt.Sprint(i), Body: body}}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "messages/s")
			})
		})
	}
}

// BenchmarkUpdatesSince reads pages of 100 updates (each a message.created
// with a 256-byte body) from a log of 5,000. Reports updates/s.
func BenchmarkUpdatesSince(b *testing.B) {
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			db := openDSN(b, testDSN(b, backend), Options{})
			ctx := context.Background()
			acct := newAccount(b, db)
			sid := newSession(b, db, acct)
			body := randBytes(b, 256)
			batch := make([]NewMessage, 100)
			for i := 0; i < 50; i++ {
				for j := range batch {
					batch[j] = NewMessage{Body: body}
				}
				if _, _, err := db.AppendMessages(ctx, acct, sid, batch); err != nil {
					b.Fatal(err)
				}
			}
			const page = 100
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				since := int64(i*page) % 4900
				ups, reset, err := db.UpdatesSince(ctx, acct, since, page)
				if err != nil || reset || len(ups) != page {
					b.Fatalf("UpdatesSince(%d) = %d, reset %v, %v", since, len(ups), reset, err)
				}
			}
			b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "updates/s")
		})
	}
}
