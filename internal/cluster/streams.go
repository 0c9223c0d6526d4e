package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/hub"
)

// Deliver implements hub.Streams.
func (b *Broker) Deliver(ctx context.Context, h hub.PublicationHandler) error {
	if !b.pubs.CompareAndSwap(nil, &pubHandlerBox{h}) {
		return errors.New("cluster: Deliver called twice")
	}
	return nil
}

// Publish implements hub.Streams: one script (scriptPublish).
func (b *Broker) Publish(ctx context.Context, topic string, data json.RawMessage, opts hub.PublishOptions) (hub.StreamPosition, error) {
	if err := b.checkOpen(); err != nil {
		return hub.StreamPosition{}, err
	}
	keys, args, err := b.publishArgs(topic, data, opts)
	if err != nil {
		return hub.StreamPosition{}, err
	}
	res, err := scriptPublish.Run(ctx, b.shardOf(topic).client, keys, args...).Slice()
	return b.publishResult(topic, opts, res, err)
}

// publishArgs returns scriptPublish's keys and arguments.
func (b *Broker) publishArgs(topic string, data json.RawMessage, opts hub.PublishOptions) ([]string, []any, error) {
	var info []byte
	if opts.Info != nil {
		var err error
		if info, err = json.Marshal(opts.Info); err != nil {
			return nil, nil, fmt.Errorf("cluster: publish: info: %w", err)
		}
	}
	histTTL := int64(0)
	if opts.HistoryTTL > 0 {
		histTTL = ms(opts.HistoryTTL)
	}
	metaTTL := ms(max(b.cfg.StreamTTL, opts.HistoryTTL))
	keys := []string{b.metaKey(topic), b.streamKey(topic)}
	args := []any{newEpoch(), []byte(data), info, b.now().UnixMilli(),
		max(0, opts.HistorySize), histTTL, metaTTL, b.channel(topic), opts.Event}
	if opts.Idem != nil {
		keys = append(keys, b.pubIdemKey(topic, opts.Idem.Key))
		args = append(args, opts.Idem.Fingerprint, ms(opts.Idem.TTL))
	}
	return keys, args, nil
}

// publishResult reads scriptPublish's reply (or error) and counts it.
func (b *Broker) publishResult(topic string, opts hub.PublishOptions, res []any, err error) (hub.StreamPosition, error) {
	if err != nil {
		return hub.StreamPosition{}, redisErr("cluster: publish %q: %w", topic, err)
	}
	pos, err := parsePosition(res)
	if err != nil {
		return hub.StreamPosition{}, fmt.Errorf("cluster: publish %q: %w", topic, err)
	}
	if len(res) == 4 { // an idempotent publication's record
		if fp, _ := res[3].(string); opts.Idem == nil || fp != opts.Idem.Fingerprint {
			return hub.StreamPosition{}, fmt.Errorf("cluster: publish %q: %w", topic, hub.ErrIdemConflict)
		}
		b.stats.idemReplayed.Add(1)
		return pos, nil
	}
	b.stats.published.Add(1)
	return pos, nil
}

func parsePosition(res []any) (hub.StreamPosition, error) {
	if len(res) < 2 {
		return hub.StreamPosition{}, fmt.Errorf("unexpected script reply %v", res)
	}
	epoch, ok1 := res[0].(string)
	off, ok2 := res[1].(int64)
	if !ok1 || !ok2 || epoch == "" || off < 0 {
		return hub.StreamPosition{}, fmt.Errorf("unexpected script reply %v", res)
	}
	return hub.StreamPosition{Epoch: epoch, Offset: uint64(off)}, nil
}

// read runs scriptRead: the topic's position, its oldest retained offset,
// and the entries from..to (from 0: none; to 0: to the end), at most count
// (0: all).
func (b *Broker) read(ctx context.Context, topic string, from, to uint64, count int) (hub.StreamPosition, uint64, []hub.Publication, error) {
	first, last := "", "+"
	if from > 0 {
		first = strconv.FormatUint(from, 10) + "-0"
	}
	if to > 0 {
		last = strconv.FormatUint(to, 10) + "-0"
	}
	sh := b.shardOf(topic)
	res, err := scriptRead.Run(ctx, sh.client,
		[]string{b.metaKey(topic), b.streamKey(topic)},
		newEpoch(), ms(b.cfg.StreamTTL), first, last, count).Slice()
	if err != nil {
		return hub.StreamPosition{}, 0, nil, redisErr("cluster: read %q: %w", topic, err)
	}
	pos, err := parsePosition(res)
	if err != nil || len(res) != 4 {
		return hub.StreamPosition{}, 0, nil, fmt.Errorf("cluster: read %q: unexpected reply %v", topic, res)
	}
	oldest, _ := res[2].(int64)
	entries, _ := res[3].([]any)
	pubs := make([]hub.Publication, 0, len(entries))
	for _, e := range entries {
		p, err := parseEntry(e, pos.Epoch)
		if err != nil {
			return hub.StreamPosition{}, 0, nil, fmt.Errorf("cluster: read %q: %w", topic, err)
		}
		pubs = append(pubs, p)
	}
	return pos, uint64(oldest), pubs, nil
}

// parseEntry decodes one XRANGE entry: [id, [field, value, ...]].
func parseEntry(e any, epoch string) (hub.Publication, error) {
	pair, ok := e.([]any)
	if !ok || len(pair) != 2 {
		return hub.Publication{}, fmt.Errorf("bad stream entry %v", e)
	}
	id, _ := pair[0].(string)
	offStr, _, _ := strings.Cut(id, "-")
	off, err := strconv.ParseUint(offStr, 10, 64)
	if err != nil {
		return hub.Publication{}, fmt.Errorf("bad stream entry id %q", id)
	}
	p := hub.Publication{Epoch: epoch, Offset: off}
	fields, _ := pair[1].([]any)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		v, _ := fields[i+1].(string)
		switch k {
		case "d":
			p.Data = json.RawMessage(v)
		case "t":
			p.TimeMs, _ = strconv.ParseInt(v, 10, 64)
		case "e": // absent in entries of the default event (and older ones)
			p.Event = v
		case "i":
			var info hub.ClientInfo
			if err := json.Unmarshal([]byte(v), &info); err != nil {
				return hub.Publication{}, fmt.Errorf("stream entry %s: info: %w", id, err)
			}
			p.Info = &info
		}
	}
	return p, nil
}

// parseMessage decodes a publication's pub/sub payload:
// epoch|offset|time|len(info)|info data, or with an event name
// epoch|offset|time|len(info):len(event)|info event data (scriptPublish).
func parseMessage(payload string) (hub.Publication, error) {
	bad := func() (hub.Publication, error) {
		return hub.Publication{}, fmt.Errorf("bad publication message %.40q", payload)
	}
	epoch, rest, ok := strings.Cut(payload, "|")
	if !ok {
		return bad()
	}
	offStr, rest, ok := strings.Cut(rest, "|")
	if !ok {
		return bad()
	}
	tStr, rest, ok := strings.Cut(rest, "|")
	if !ok {
		return bad()
	}
	nStr, rest, ok := strings.Cut(rest, "|")
	if !ok {
		return bad()
	}
	nStr, evStr, hasEvent := strings.Cut(nStr, ":")
	off, err1 := strconv.ParseUint(offStr, 10, 64)
	t, err2 := strconv.ParseInt(tStr, 10, 64)
	n, err3 := strconv.Atoi(nStr)
	ne := 0
	if hasEvent {
		var err error
		if ne, err = strconv.Atoi(evStr); err != nil || ne <= 0 {
			return bad()
		}
	}
	if err1 != nil || err2 != nil || err3 != nil || n < 0 || n > len(rest) || ne > len(rest)-n || epoch == "" {
		return bad()
	}
	p := hub.Publication{Epoch: epoch, Offset: off, TimeMs: t, Event: rest[n : n+ne], Data: json.RawMessage(rest[n+ne:])}
	if n > 0 {
		var info hub.ClientInfo
		if err := json.Unmarshal([]byte(rest[:n]), &info); err != nil {
			return bad()
		}
		p.Info = &info
	}
	return p, nil
}

// History implements hub.Streams.
func (b *Broker) History(ctx context.Context, topic string, since *hub.StreamPosition, limit int) ([]hub.Publication, hub.StreamPosition, error) {
	if err := b.checkOpen(); err != nil {
		return nil, hub.StreamPosition{}, err
	}
	from := uint64(1)
	if since != nil {
		from = since.Offset + 1
	}
	pos, oldest, pubs, err := b.read(ctx, topic, from, 0, max(0, limit))
	if err != nil {
		return nil, hub.StreamPosition{}, err
	}
	if since != nil {
		if since.Epoch != pos.Epoch || since.Offset > pos.Offset {
			return nil, pos, hub.ErrHistoryGap
		}
		if from > pos.Offset {
			return nil, pos, nil // nothing missed
		}
		if oldest == 0 || oldest > from {
			return nil, pos, hub.ErrHistoryGap
		}
	}
	// Entry ids are offsets, appended in order and trimmed from the oldest,
	// so a range is contiguous; check it all the same: never hand out a
	// set with a hole.
	if since != nil {
		for i, p := range pubs {
			if p.Offset != from+uint64(i) {
				return nil, pos, hub.ErrHistoryGap
			}
		}
	}
	return pubs, pos, nil
}

// Position implements hub.Streams.
func (b *Broker) Position(ctx context.Context, topic string) (hub.StreamPosition, error) {
	if err := b.checkOpen(); err != nil {
		return hub.StreamPosition{}, err
	}
	pos, _, _, err := b.read(ctx, topic, 0, 0, 0)
	return pos, err
}

// opTimeout bounds the broker's own Redis calls (fills, checks).
const opTimeout = 5 * time.Second
