package cluster

// Node messages out: one writer per shard batches the PUBLISHes of
// concurrent SendToNode calls into pipelines (docs/cluster.md, "Node
// messages in batches").

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/junctionhq/junction/internal/hub"
)

const (
	// nodeQueueSize bounds each shard's queue of node messages waiting for
	// its writer. A sender finding it full waits (for its context), so a
	// burst slows its senders down and loses nothing.
	nodeQueueSize = 4096
	// maxNodeBatch bounds the PUBLISHes of one pipeline.
	maxNodeBatch = 256
	// maxNodeBatchBytes bounds the payload bytes of one pipeline (one
	// message larger than that goes alone).
	maxNodeBatchBytes = 1 << 20
)

// nodeSender sends one shard's node messages. SendToNode queues a message
// and waits for its outcome; run, the only writer, takes everything queued
// (up to a batch) and PUBLISHes it as one pipeline, so concurrent messages
// share one round trip to Redis instead of taking one each. Messages
// leave in queue order, one pipeline at a time (the next one is written
// once Redis answered the previous one), so a node's messages arrive in the
// order they were sent.
type nodeSender struct {
	b     *Broker        // set once
	sh    *shard         // set once
	queue chan *nodeSend // set once, bounded (nodeQueueSize): SendToNode → run
	taken atomic.Uint64  // messages run took for a pipeline (tests watch the writer with it)
}

// nodeSend is one queued message and, once done is closed, its outcome.
type nodeSend struct {
	channel string // set once
	msg     []byte // set once
	// state moves from sendQueued to sendTaken (by run, which then sends
	// it) or to sendAbandoned (by the sender, whose context ended first:
	// run skips it, it never leaves).
	state     atomic.Uint32
	receivers int64         // written by run before done is closed
	err       error         // written by run before done is closed
	done      chan struct{} // closed by run once the outcome is known (nil: queued, see then)
	// then, for a message queued without waiting (enqueue), gets the
	// outcome instead of done; set once.
	then func(receivers int64, err error)
}

const (
	sendQueued uint32 = iota
	sendTaken
	sendAbandoned
)

func newNodeSender(b *Broker, sh *shard) *nodeSender {
	return &nodeSender{b: b, sh: sh, queue: make(chan *nodeSend, nodeQueueSize)}
}

// send queues msg for nodeID's channel and waits for its PUBLISH. It
// returns the number of receivers (0: nobody listens there). When ctx ends
// (or the broker closes) before the message was taken for a pipeline, it is
// never sent; after that, the error says it may have been.
func (w *nodeSender) send(ctx context.Context, nodeID string, msg []byte) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("not sent: %w", err)
	}
	s := &nodeSend{channel: w.b.nodeChannel(nodeID), msg: msg, done: make(chan struct{})}
	select {
	case w.queue <- s:
	case <-ctx.Done():
		return 0, fmt.Errorf("not sent (waiting for room in the queue to redis): %w", ctx.Err())
	case <-w.b.stop:
		return 0, hub.ErrBrokerClosed
	}
	var cause error
	select {
	case <-s.done:
		return s.receivers, s.err
	case <-ctx.Done():
		cause = ctx.Err()
	case <-w.b.stop:
		cause = hub.ErrBrokerClosed
	}
	if s.state.CompareAndSwap(sendQueued, sendAbandoned) {
		if errors.Is(cause, hub.ErrBrokerClosed) {
			return 0, cause
		}
		return 0, fmt.Errorf("not sent: %w", cause)
	}
	// run took it: a pipeline is on its way, bounded by its own timeout.
	// Waiting for it on close keeps Close's promise that nothing taken is
	// left unanswered; a sender whose context ended does not wait.
	if errors.Is(cause, hub.ErrBrokerClosed) {
		<-s.done
		return s.receivers, s.err
	}
	return 0, fmt.Errorf("no answer from redis yet (the message may have been sent): %w", cause)
}

// run is the shard's writer, until the broker closes.
func (w *nodeSender) run() {
	batch := make([]*nodeSend, 0, maxNodeBatch)
	for {
		batch = batch[:0]
		select {
		case <-w.b.stop:
			return
		case s := <-w.queue:
			batch = w.take(batch, s)
		}
		size := 0
		if len(batch) > 0 {
			size = len(batch[0].msg)
		}
	drain:
		for len(batch) < maxNodeBatch && size < maxNodeBatchBytes {
			select {
			case s := <-w.queue:
				n := len(batch)
				batch = w.take(batch, s)
				if len(batch) > n {
					size += len(s.msg)
				}
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			w.publish(batch)
		}
	}
}

// take appends s to batch unless its sender abandoned it.
func (w *nodeSender) take(batch []*nodeSend, s *nodeSend) []*nodeSend {
	if !s.state.CompareAndSwap(sendQueued, sendTaken) {
		return batch
	}
	w.taken.Add(1)
	return append(batch, s)
}

// publish sends batch as one pipeline and gives each message its outcome.
func (w *nodeSender) publish(batch []*nodeSend) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	pipe := w.sh.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(batch))
	for i, s := range batch {
		cmds[i] = pipe.Publish(ctx, s.channel, s.msg)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	w.b.stats.nodeBatches.Add(1)
	w.b.stats.nodeSent.Add(uint64(len(batch)))
	for i, s := range batch {
		s.receivers, s.err = cmds[i].Result()
		if s.then != nil {
			s.then(s.receivers, s.err)
		} else if s.done != nil {
			close(s.done)
		}
	}
}

// SendToNode implements hub.Directory: a PUBLISH on the node's channel,
// batched with the other node messages sent at the same time through the
// same shard (nodeSender). It fails when no node listens there (the node is
// gone).
func (b *Broker) SendToNode(ctx context.Context, nodeID string, msg json.RawMessage) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if !b.started.Load() {
		return errors.New("cluster: SendToNode before Start")
	}
	n, err := b.shardOf("node:"+nodeID).sender.send(ctx, nodeID, msg)
	if err != nil {
		if errors.Is(err, hub.ErrBrokerClosed) {
			return err
		}
		return fmt.Errorf("cluster: send to node %q: %w", nodeID, err)
	}
	if n == 0 {
		b.routes.forgetNode(nodeID)
		return fmt.Errorf("cluster: node %q is not reachable", nodeID)
	}
	return nil
}

// enqueue queues msg for nodeID's channel without waiting: then, if not nil,
// gets the number of receivers and the error once the pipeline carrying it
// was answered (on the writer: it must not block). It reports false,
// queueing nothing, when the queue is full or the broker closed.
func (w *nodeSender) enqueue(nodeID string, msg []byte, then func(int64, error)) bool {
	s := &nodeSend{channel: w.b.nodeChannel(nodeID), msg: msg, then: then}
	select {
	case <-w.b.stop:
		return false
	default:
	}
	select {
	case w.queue <- s:
		return true
	default:
		return false
	}
}

// QueueToNode implements hub.NodeQueue: SendToNode without waiting for
// the PUBLISH (nodeSender.enqueue). sent gets what SendToNode would have
// returned.
func (b *Broker) QueueToNode(nodeID string, msg json.RawMessage, sent func(error)) bool {
	if b.checkOpen() != nil || !b.started.Load() {
		return false
	}
	return b.shardOf("node:"+nodeID).sender.enqueue(nodeID, msg, func(n int64, err error) {
		switch {
		case err != nil:
			err = fmt.Errorf("cluster: send to node %q: %w", nodeID, err)
		case n == 0:
			b.routes.forgetNode(nodeID)
			err = fmt.Errorf("cluster: node %q is not reachable", nodeID)
		}
		if sent != nil {
			sent(err)
		}
	})
}
