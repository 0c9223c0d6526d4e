package cluster

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/junctionhq/junction/internal/hub"
)

// PublishBatch implements hub.BatchPublisher: the publications of each
// shard go in one pipeline, on one connection, so Redis runs their scripts
// in the order given: SCRIPT LOAD of scriptPublish first (so that no
// EVALSHA after it can fail with NOSCRIPT while a later one succeeds, which
// would reorder them), then one EVALSHA per publication. One round trip per
// shard instead of one per publication. A connection failing mid-pipeline
// fails every command after the failure: a failed publication is never
// followed by a published one of the same batch on its shard, except when
// a script itself fails (as Publish would for that publication alone).
func (b *Broker) PublishBatch(ctx context.Context, reqs []hub.PublishRequest) []hub.PublishResult {
	out := make([]hub.PublishResult, len(reqs))
	if err := b.checkOpen(); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	if len(reqs) == 1 {
		r := reqs[0]
		out[0].Pos, out[0].Err = b.Publish(ctx, r.Topic, r.Data, r.Opts)
		return out
	}
	// Each shard's requests, in order; shards in order of first use.
	var order []*shard
	byShard := make(map[*shard][]int, 1)
	for i, r := range reqs {
		sh := b.shardOf(r.Topic)
		if _, ok := byShard[sh]; !ok {
			order = append(order, sh)
		}
		byShard[sh] = append(byShard[sh], i)
	}
	for _, sh := range order {
		b.publishPipeline(ctx, sh, reqs, byShard[sh], out)
	}
	b.stats.publishBatches.Add(1)
	return out
}

// publishPipeline publishes reqs[idx...] (all on sh) in one pipeline into
// out.
func (b *Broker) publishPipeline(ctx context.Context, sh *shard, reqs []hub.PublishRequest, idx []int, out []hub.PublishResult) {
	pipe := sh.client.Pipeline()
	pipe.ScriptLoad(ctx, publishSource)
	cmds := make([]*redis.Cmd, len(idx))
	for k, i := range idx {
		r := reqs[i]
		keys, args, err := b.publishArgs(r.Topic, r.Data, r.Opts)
		if err != nil {
			out[i].Err = err
			continue
		}
		cmds[k] = pipe.EvalSha(ctx, scriptPublish.Hash(), keys, args...)
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	for k, i := range idx {
		if cmds[k] == nil {
			continue
		}
		r := reqs[i]
		res, err := cmds[k].Slice()
		out[i].Pos, out[i].Err = b.publishResult(r.Topic, r.Opts, res, err)
	}
}
