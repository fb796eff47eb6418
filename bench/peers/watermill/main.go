// The Watermill peer of kafka-orm's bench (./scripts/bench --peers): Watermill's SQL
// publisher writes each event in the business transaction (through the forwarder's
// enveloping publisher), and Watermill's forwarder (components/forwarder) moves the rows
// from PostgreSQL to Kafka with the watermill-kafka publisher (sarama, idempotent,
// acks=all).
//
// It measures what kafka-orm's relay_throughput and relay_latency scenarios measure:
//
//	-mode throughput  N events committed in ONE transaction while the forwarder runs;
//	                  the clock runs from the commit until the broker acknowledged all N
//	-mode latency     one event per transaction at -rate commits/s for -seconds; per
//	                  event: commit returned -> the broker acknowledged it
//
// "Acknowledged" is when the Kafka publisher's Publish returned for the message (sarama's
// SyncProducer returns once the broker acked it), seen by a decorator around the
// publisher the forwarder uses; one process, one clock. The result is one JSON line on
// stdout; progress and errors go to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The SQL topic the forwarder listens to (table watermill_<name>).
const forwarderTopic = "kafka_orm_bench_outbox"

// Distinct message keys, as in kafka-orm's bench (examples/src/bench/events.rs).
const keys = 1000

// Events per Publish call when N events go into one transaction (kafka-orm's bench
// publishes in chunks of 5,000 too).
const chunk = 5000

type options struct {
	mode        string
	bootstrap   string
	databaseURL string
	topic       string
	messages    int
	warmup      int
	payload     int
	batch       int
	poll        time.Duration
	rate        int
	seconds     int
	timeout     time.Duration
}

func parseOptions() options {
	var o options
	flag.StringVar(&o.mode, "mode", "throughput", "throughput or latency")
	flag.StringVar(&o.bootstrap, "bootstrap", os.Getenv("KAFKA_BOOTSTRAP_SERVERS"), "Kafka bootstrap servers")
	flag.StringVar(&o.databaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (a database of the bench's own)")
	flag.StringVar(&o.topic, "topic", "", "Kafka topic to forward to (exists, with its partitions)")
	flag.IntVar(&o.messages, "messages", 5000, "throughput: events committed at once")
	flag.IntVar(&o.warmup, "warmup", 0, "throughput: warm-up events first (default max(N/20, 1000))")
	flag.IntVar(&o.payload, "payload", 256, "payload bytes")
	flag.IntVar(&o.batch, "batch", 1000, "SubscribeBatchSize of the SQL subscriber")
	flag.DurationVar(&o.poll, "poll", time.Millisecond, "PollInterval of the SQL subscriber")
	flag.IntVar(&o.rate, "rate", 200, "latency: commits per second")
	flag.IntVar(&o.seconds, "seconds", 5, "latency: length of the measured run")
	flag.DurationVar(&o.timeout, "stall-timeout", 60*time.Second, "fail when nothing is delivered for this long")
	flag.Parse()
	if o.bootstrap == "" || o.databaseURL == "" || o.topic == "" {
		fmt.Fprintln(os.Stderr, "watermill-peer: -bootstrap, -database-url and -topic are required")
		os.Exit(2)
	}
	if o.warmup == 0 {
		o.warmup = max(o.messages/20, 1000)
	}
	return o
}

func nowUs() int64 { return time.Now().UnixMicro() }

// payload is the JSON kafka-orm's bench event encodes to, padded to n bytes.
func payload(seq int64, sentAtUs int64, n int) []byte {
	key := fmt.Sprintf("k%04d", seq%keys)
	base := fmt.Sprintf(`{"key":"%s","seq":%d,"sent_at_us":%d,"pad":""}`, key, seq, sentAtUs)
	pad := strings.Repeat("x", max(n-len(base), 0))
	return []byte(fmt.Sprintf(`{"key":"%s","seq":%d,"sent_at_us":%d,"pad":"%s"}`, key, seq, sentAtUs, pad))
}

func newMessage(seq int64, n int) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), payload(seq, nowUs(), n))
	msg.Metadata.Set("key", fmt.Sprintf("k%04d", seq%keys))
	msg.Metadata.Set("seq", strconv.FormatInt(seq, 10))
	return msg
}

// acks decorates the Kafka publisher the forwarder uses: when Publish returns, the broker
// has acknowledged the message (SyncProducer).
type acks struct {
	inner message.Publisher
	count atomic.Int64
	mu    sync.Mutex
	at    map[int64]int64 // seq -> ack time (µs), latency mode only
	keep  atomic.Bool
}

func (a *acks) Publish(topic string, msgs ...*message.Message) error {
	if err := a.inner.Publish(topic, msgs...); err != nil {
		return err
	}
	now := nowUs()
	if a.keep.Load() {
		a.mu.Lock()
		for _, m := range msgs {
			if seq, err := strconv.ParseInt(m.Metadata.Get("seq"), 10, 64); err == nil {
				a.at[seq] = now
			}
		}
		a.mu.Unlock()
	}
	a.count.Add(int64(len(msgs)))
	return nil
}

func (a *acks) Close() error { return a.inner.Close() }

func (a *acks) ackedAt(seq int64) (int64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.at[seq]
	return v, ok
}

// quietLogger passes on errors only: Watermill's info lines would flood the bench's output.
type quietLogger struct{ watermill.LoggerAdapter }

func (quietLogger) Info(string, watermill.LogFields)  {}
func (quietLogger) Debug(string, watermill.LogFields) {}
func (quietLogger) Trace(string, watermill.LogFields) {}
func (l quietLogger) With(f watermill.LogFields) watermill.LoggerAdapter {
	return quietLogger{l.LoggerAdapter.With(f)}
}

type peer struct {
	o       options
	pool    *pgxpool.Pool
	schema  wsql.DefaultPostgreSQLSchema
	acks    *acks
	fwd     *forwarder.Forwarder
	logger  watermill.LoggerAdapter
	fwdDone chan error
}

func saramaConfig() *sarama.Config {
	cfg := kafka.DefaultSaramaSyncPublisherConfig()
	cfg.Version = sarama.V4_0_0_0
	// The same delivery guarantee as kafka-orm's relay: idempotent producer, acks=all.
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1 // sarama's requirement for idempotence
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	return cfg
}

func start(ctx context.Context, o options) (*peer, error) {
	pool, err := pgxpool.New(ctx, o.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	logger := quietLogger{watermill.NewStdLoggerWithOut(os.Stderr, false, false)}
	p := &peer{o: o, pool: pool, logger: logger, fwdDone: make(chan error, 1)}
	p.schema = wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: o.batch}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
		SchemaAdapter:    p.schema,
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		PollInterval:     o.poll,
		InitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("creating the SQL subscriber: %w", err)
	}
	// The tables exist before the first publish (the publisher writes in a transaction,
	// where it must not create them).
	if err := sub.SubscribeInitialize(forwarderTopic); err != nil {
		return nil, fmt.Errorf("creating watermill's tables: %w", err)
	}
	kpub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers: strings.Split(o.bootstrap, ","),
		Marshaler: kafka.NewWithPartitioningMarshaler(func(_ string, m *message.Message) (string, error) {
			return m.Metadata.Get("key"), nil
		}),
		OverwriteSaramaConfig: saramaConfig(),
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("creating the Kafka publisher: %w", err)
	}
	p.acks = &acks{inner: kpub, at: make(map[int64]int64)}
	fwd, err := forwarder.NewForwarder(sub, p.acks, logger, forwarder.Config{ForwarderTopic: forwarderTopic})
	if err != nil {
		return nil, fmt.Errorf("creating the forwarder: %w", err)
	}
	p.fwd = fwd
	go func() { p.fwdDone <- fwd.Run(ctx) }()
	select {
	case <-fwd.Running():
	case err := <-p.fwdDone:
		return nil, fmt.Errorf("the forwarder stopped at start: %v", err)
	case <-time.After(60 * time.Second):
		return nil, errors.New("the forwarder did not start within 60 s")
	}
	return p, nil
}

func (p *peer) close() {
	_ = p.fwd.Close()
	_ = p.acks.Close()
	p.pool.Close()
}

// publish writes events from..from+n through the forwarder's publisher inside one
// transaction and returns when the commit returned, with that time.
func (p *peer) publish(ctx context.Context, from, n int64) (int64, error) {
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	sqlPub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: p.schema}, p.logger)
	if err != nil {
		return 0, err
	}
	pub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: forwarderTopic})
	for start := from; start < from+n; start += chunk {
		end := min(start+chunk, from+n)
		msgs := make([]*message.Message, 0, end-start)
		for seq := start; seq < end; seq++ {
			msgs = append(msgs, newMessage(seq, p.o.payload))
		}
		if err := pub.Publish(p.o.topic, msgs...); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return nowUs(), nil
}

// waitAcked waits until the acknowledged count reaches total; fails when it stalls.
func (p *peer) waitAcked(total int64) error {
	last, lastMove := int64(-1), time.Now()
	for {
		done := p.acks.count.Load()
		if done >= total {
			return nil
		}
		if done != last {
			last, lastMove = done, time.Now()
		} else if time.Since(lastMove) > p.o.timeout {
			return fmt.Errorf("the forwarder stopped at %d of %d acknowledged messages", done, total)
		}
		select {
		case err := <-p.fwdDone:
			return fmt.Errorf("the forwarder stopped: %v", err)
		case <-time.After(200 * time.Microsecond):
		}
	}
}

func (p *peer) settings() map[string]any {
	return map[string]any{
		"watermill":              "v1.5.1",
		"watermill_sql":          "v4.1.2 DefaultPostgreSQLSchema + DefaultPostgreSQLOffsetsAdapter",
		"watermill_kafka":        "v3.0.6 (sarama v1.61.1 SyncProducer, idempotent, acks=all)",
		"subscribe_batch_size":   p.o.batch,
		"poll_interval_ms":       float64(p.o.poll.Microseconds()) / 1000,
		"forwarder":              "components/forwarder",
		"partition_key":          "key (sarama hash partitioner)",
		"payload_bytes":          p.o.payload,
		"commit_per_transaction": map[bool]string{true: "N events in one transaction", false: "one event per transaction"}[p.o.mode == "throughput"],
	}
}

func throughput(ctx context.Context, p *peer) (map[string]any, error) {
	warm := int64(p.o.warmup)
	fmt.Fprintf(os.Stderr, "watermill-peer: warm-up, %d events\n", warm)
	if _, err := p.publish(ctx, 0, warm); err != nil {
		return nil, fmt.Errorf("warm-up publish: %w", err)
	}
	if err := p.waitAcked(warm); err != nil {
		return nil, err
	}
	n := int64(p.o.messages)
	fmt.Fprintf(os.Stderr, "watermill-peer: %d events in one transaction\n", n)
	committed, err := p.publish(ctx, warm, n)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := p.waitAcked(warm + n); err != nil {
		return nil, err
	}
	secs := float64(nowUs()-committed) / 1e6
	return map[string]any{
		"messages":  n,
		"seconds":   secs,
		"msg_per_s": float64(n) / secs,
	}, nil
}

// pacer ticks every period; a late tick fires at once and the next one comes a period
// after it (tokio's MissedTickBehavior::Delay, as kafka-orm's bench paces).
type pacer struct {
	period time.Duration
	next   time.Time
}

func (t *pacer) tick() {
	now := time.Now()
	if t.next.IsZero() || now.After(t.next) {
		t.next = now
	}
	time.Sleep(time.Until(t.next))
	t.next = t.next.Add(t.period)
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100 + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func latency(ctx context.Context, p *peer) (map[string]any, error) {
	p.acks.keep.Store(true)
	ticks := &pacer{period: time.Second / time.Duration(p.o.rate)}
	seq := int64(0)
	fmt.Fprintln(os.Stderr, "watermill-peer: warm-up until messages flow")
	deadline := time.Now().Add(60 * time.Second)
	for {
		ticks.tick()
		if _, err := p.publish(ctx, seq, 1); err != nil {
			return nil, err
		}
		seq++
		if seq >= int64(p.o.rate) && p.acks.count.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("nothing was forwarded within 60 s")
		}
	}
	if err := p.waitAcked(seq); err != nil {
		return nil, err
	}
	first := seq
	commits := int64(p.o.seconds * p.o.rate)
	fmt.Fprintf(os.Stderr, "watermill-peer: %d commits at %d/s\n", commits, p.o.rate)
	committedAt := make([]int64, 0, commits)
	for i := int64(0); i < commits; i++ {
		ticks.tick()
		at, err := p.publish(ctx, first+i, 1)
		if err != nil {
			return nil, err
		}
		committedAt = append(committedAt, at)
	}
	if err := p.waitAcked(first + commits); err != nil {
		return nil, err
	}
	samples := make([]float64, 0, commits)
	for i, at := range committedAt {
		acked, ok := p.acks.ackedAt(first + int64(i))
		if !ok {
			return nil, fmt.Errorf("no acknowledgement recorded for seq %d", first+int64(i))
		}
		samples = append(samples, float64(acked-at)/1000)
	}
	sort.Float64s(samples)
	return map[string]any{
		"samples":    len(samples),
		"rate_per_s": p.o.rate,
		"seconds":    p.o.seconds,
		"p50_ms":     percentile(samples, 50),
		"p99_ms":     percentile(samples, 99),
		"max_ms":     samples[len(samples)-1],
	}, nil
}

func main() {
	o := parseOptions()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := start(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "watermill-peer: %v\n", err)
		os.Exit(1)
	}
	var result map[string]any
	switch o.mode {
	case "throughput":
		result, err = throughput(ctx, p)
	case "latency":
		result, err = latency(ctx, p)
	default:
		err = fmt.Errorf("unknown -mode %q", o.mode)
	}
	p.close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "watermill-peer: %v\n", err)
		os.Exit(1)
	}
	result["peer"] = "watermill"
	result["mode"] = o.mode
	result["settings"] = p.settings()
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}
