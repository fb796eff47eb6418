package kafkaorm.bench;

import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.connect.source.SourceRecord;

import io.debezium.embedded.Connect;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.RecordChangeEvent;
import io.debezium.engine.format.ChangeEventFormat;

/**
 * The Debezium peer of kafka-orm's bench ({@code ./scripts/bench --peers}): the embedded
 * engine runs the PostgreSQL connector (pgoutput, a replication slot of its own) with the
 * outbox event router SMT on an outbox table, and its change consumer produces every routed
 * record with an idempotent Kafka producer (acks=all), marking a batch processed only once
 * the broker acknowledged all of it (as Debezium Server's Kafka sink does).
 *
 * <p>It measures what kafka-orm's relay_throughput and relay_latency scenarios measure:
 * <ul>
 *   <li>{@code --mode throughput}: N outbox rows committed in ONE transaction while the
 *       engine streams; the clock runs from the commit until the broker acknowledged all N.
 *   <li>{@code --mode latency}: one outbox row per transaction at {@code --rate} commits/s
 *       for {@code --seconds}; per row: commit returned &rarr; the producer's callback saw
 *       the broker's acknowledgement. Load generator and engine share this process (and
 *       its clock).
 * </ul>
 * The result is one JSON line on stdout; progress and errors go to stderr.
 */
public final class DebeziumPeer {
    private static final int KEYS = 1000;

    private final Map<String, String> opts;
    private final String mode;
    private final String topic;
    private final int payloadBytes;
    private final String jdbcUrl;
    private final String dbUser;
    private final String dbPassword;
    private final String dbHost;
    private final int dbPort;
    private final String dbName;
    private final String slot;

    private KafkaProducer<byte[], byte[]> producer;
    private DebeziumEngine<RecordChangeEvent<SourceRecord>> engine;
    private ExecutorService engineThread;
    private Connection db;
    private PreparedStatement insert;

    /** Acknowledged records whose seq is at least {@code countFrom}. */
    private final AtomicLong acked = new AtomicLong();
    private volatile long countFrom = Long.MAX_VALUE;
    /** seq -> ack time (µs), latency mode only. */
    private final ConcurrentHashMap<Long, Long> ackedAt = new ConcurrentHashMap<>();
    private volatile boolean keepAckTimes;
    private final AtomicReference<Throwable> failure = new AtomicReference<>();
    private final AtomicLong batches = new AtomicLong();
    private final AtomicLong batchRecords = new AtomicLong();
    private long seq;

    private DebeziumPeer(Map<String, String> opts) throws Exception {
        this.opts = opts;
        this.mode = opt("mode", "throughput");
        this.topic = required("topic");
        this.payloadBytes = Integer.parseInt(opt("payload", "256"));
        URI url = URI.create(required("database-url"));
        String[] userInfo = url.getRawUserInfo() == null ? new String[] {"postgres", ""} : url.getRawUserInfo().split(":", 2);
        this.dbUser = URLDecoder.decode(userInfo[0], StandardCharsets.UTF_8);
        this.dbPassword = userInfo.length > 1 ? URLDecoder.decode(userInfo[1], StandardCharsets.UTF_8) : "";
        this.dbHost = url.getHost();
        this.dbPort = url.getPort() > 0 ? url.getPort() : 5432;
        this.dbName = url.getPath().replaceFirst("^/", "");
        this.jdbcUrl = "jdbc:postgresql://" + dbHost + ":" + dbPort + "/" + dbName;
        this.slot = opt("slot", "kafka_orm_bench_dbz_" + ProcessHandle.current().pid());
    }

    private String opt(String name, String dflt) {
        return opts.getOrDefault(name, dflt);
    }

    private String required(String name) {
        String v = opts.get(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }

    static long nowUs() {
        java.time.Instant now = java.time.Instant.now();
        return now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000;
    }

    static void log(String msg) {
        System.err.println("debezium-peer: " + msg);
    }

    /** The JSON kafka-orm's bench event encodes to, padded to n bytes. */
    static String payload(long seq, long sentAtUs, int n) {
        String key = String.format(Locale.ROOT, "k%04d", seq % KEYS);
        String base = "{\"key\":\"" + key + "\",\"seq\":" + seq + ",\"sent_at_us\":" + sentAtUs + ",\"pad\":\"";
        int pad = Math.max(n - base.length() - 2, 0);
        return base + "x".repeat(pad) + "\"}";
    }

    /** The seq of a payload written by {@link #payload}. */
    static long seqOf(byte[] value) {
        // {"key":"k0001","seq":123,...: the digits after the second colon.
        int i = 0;
        int colons = 0;
        while (i < value.length && colons < 2) {
            if (value[i++] == ':') {
                colons++;
            }
        }
        long v = 0;
        while (i < value.length && value[i] >= '0' && value[i] <= '9') {
            v = v * 10 + (value[i++] - '0');
        }
        return v;
    }

    private Properties engineProperties() {
        Properties p = new Properties();
        p.setProperty("name", "kafka-orm-bench-debezium");
        p.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        p.setProperty("offset.storage", "org.apache.kafka.connect.storage.MemoryOffsetBackingStore");
        p.setProperty("offset.flush.interval.ms", opt("offset-flush-interval-ms", "1000"));
        p.setProperty("database.hostname", dbHost);
        p.setProperty("database.port", Integer.toString(dbPort));
        p.setProperty("database.user", dbUser);
        p.setProperty("database.password", dbPassword);
        p.setProperty("database.dbname", dbName);
        p.setProperty("topic.prefix", "kafka_orm_bench");
        p.setProperty("plugin.name", "pgoutput");
        p.setProperty("slot.name", slot);
        p.setProperty("slot.drop.on.stop", "true");
        p.setProperty("publication.name", slot);
        p.setProperty("publication.autocreate.mode", "filtered");
        p.setProperty("table.include.list", "public.outbox");
        p.setProperty("snapshot.mode", "no_data");
        p.setProperty("tombstones.on.delete", "false");
        p.setProperty("poll.interval.ms", opt("poll-interval-ms", "1"));
        p.setProperty("max.batch.size", opt("max-batch-size", "8192"));
        p.setProperty("max.queue.size", opt("max-queue-size", "32768"));
        p.setProperty("transforms", "outbox");
        p.setProperty("transforms.outbox.type", "io.debezium.transforms.outbox.EventRouter");
        p.setProperty("transforms.outbox.route.topic.replacement", topic);
        p.setProperty("transforms.outbox.table.expand.json.payload", "false");
        return p;
    }

    private Map<String, Object> settings() {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("debezium", "3.6.1.Final embedded (async engine), PostgresConnector, pgoutput");
        s.put("smt", "io.debezium.transforms.outbox.EventRouter (key aggregateid, value payload)");
        s.put("snapshot_mode", "no_data");
        s.put("poll_interval_ms", Integer.parseInt(opt("poll-interval-ms", "1")));
        s.put("max_batch_size", Integer.parseInt(opt("max-batch-size", "8192")));
        s.put("max_queue_size", Integer.parseInt(opt("max-queue-size", "32768")));
        s.put("producer", "kafka-clients " + org.apache.kafka.common.utils.AppInfoParser.getVersion()
                + ": enable.idempotence=true, acks=all, linger.ms=" + opt("linger-ms", "1")
                + ", batch.size=" + opt("batch-size", "1000000"));
        s.put("outbox_rows", "inserted, not deleted (the router reads the WAL; a delete would only add work)");
        s.put("payload_bytes", payloadBytes);
        return s;
    }

    private void startProducer() {
        Properties p = new Properties();
        p.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, required("bootstrap"));
        p.setProperty(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        p.setProperty(ProducerConfig.LINGER_MS_CONFIG, opt("linger-ms", "1"));
        p.setProperty(ProducerConfig.BATCH_SIZE_CONFIG, opt("batch-size", "1000000"));
        p.setProperty(ProducerConfig.CLIENT_ID_CONFIG, "kafka-orm-bench-debezium");
        producer = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    private void prepareDatabase() throws SQLException {
        db = DriverManager.getConnection(jdbcUrl, dbUser, dbPassword);
        try (Statement st = db.createStatement()) {
            st.execute("CREATE TABLE IF NOT EXISTS outbox ("
                    + " id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
                    + " aggregatetype varchar(255) NOT NULL,"
                    + " aggregateid varchar(255) NOT NULL,"
                    + " type varchar(255) NOT NULL,"
                    + " payload text NOT NULL)");
        }
        db.setAutoCommit(false);
        insert = db.prepareStatement(
                "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ('bench', ?, 'BenchEvent', ?)");
    }

    /** Inserts rows seq..seq+n in one transaction; returns the time the commit returned. */
    private long commitRows(int n) throws SQLException {
        for (int i = 0; i < n; i++) {
            long s = seq++;
            insert.setString(1, String.format(Locale.ROOT, "k%04d", s % KEYS));
            insert.setString(2, payload(s, nowUs(), payloadBytes));
            if (n == 1) {
                insert.executeUpdate();
            } else {
                insert.addBatch();
                if ((i + 1) % 5000 == 0) {
                    insert.executeBatch();
                }
            }
        }
        if (n > 1) {
            insert.executeBatch();
        }
        db.commit();
        return nowUs();
    }

    private void handleBatch(List<RecordChangeEvent<SourceRecord>> records,
            DebeziumEngine.RecordCommitter<RecordChangeEvent<SourceRecord>> committer) throws InterruptedException {
        CountDownLatch pending = new CountDownLatch(records.size());
        AtomicReference<Exception> error = new AtomicReference<>();
        for (RecordChangeEvent<SourceRecord> event : records) {
            SourceRecord r = event.record();
            if (r.value() == null || r.topic() == null || !r.topic().equals(topic)) {
                pending.countDown(); // not an outbox event (e.g. a heartbeat)
                continue;
            }
            byte[] key = r.key() == null ? null : r.key().toString().getBytes(StandardCharsets.UTF_8);
            byte[] value = r.value() instanceof byte[] b ? b : r.value().toString().getBytes(StandardCharsets.UTF_8);
            producer.send(new ProducerRecord<>(topic, null, key, value), (md, ex) -> {
                if (ex != null) {
                    error.compareAndSet(null, ex);
                } else {
                    long s = seqOf(value);
                    if (keepAckTimes) {
                        ackedAt.put(s, nowUs());
                    }
                    if (s >= countFrom) {
                        acked.incrementAndGet();
                    }
                }
                pending.countDown();
            });
        }
        pending.await();
        if (error.get() != null) {
            failure.compareAndSet(null, error.get());
            throw new RuntimeException("the producer failed", error.get());
        }
        for (RecordChangeEvent<SourceRecord> event : records) {
            committer.markProcessed(event);
        }
        committer.markBatchFinished();
        batches.incrementAndGet();
        batchRecords.addAndGet(records.size());
    }

    private void startEngine() {
        engine = DebeziumEngine.create(ChangeEventFormat.of(Connect.class))
                .using(engineProperties())
                .notifying(this::handleBatch)
                .using((success, message, error) -> {
                    if (!success) {
                        failure.compareAndSet(null, error != null ? error : new RuntimeException(message));
                    }
                })
                .build();
        engineThread = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "debezium-engine");
            t.setDaemon(true);
            return t;
        });
        engineThread.execute(engine);
    }

    private void check() {
        Throwable t = failure.get();
        if (t != null) {
            throw new RuntimeException("the Debezium engine failed: " + t, t);
        }
    }

    /** Waits until {@code acked} reaches {@code n}; fails when nothing moves for 60 s. */
    private void waitAcked(long n) throws InterruptedException {
        long last = -1;
        long lastMove = System.nanoTime();
        while (true) {
            check();
            long done = acked.get();
            if (done >= n) {
                return;
            }
            if (done != last) {
                last = done;
                lastMove = System.nanoTime();
            } else if (System.nanoTime() - lastMove > TimeUnit.SECONDS.toNanos(60)) {
                throw new IllegalStateException("Debezium stopped at " + done + " of " + n + " acknowledged records");
            }
            LockSupport.parkNanos(200_000);
        }
    }

    /** Counts acknowledgements of the rows committed from now on. */
    private void countFromNow() {
        countFrom = seq;
        acked.set(0);
    }

    /** Commits a row every 20 ms until one reaches the broker: the slot streams from then on. */
    private void waitStreaming() throws Exception {
        log("waiting for the connector to stream");
        countFromNow();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (acked.get() == 0) {
            check();
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("nothing reached the broker within 120 s of the engine's start");
            }
            commitRows(1);
            Thread.sleep(20);
        }
    }

    private Map<String, Object> throughput() throws Exception {
        int n = Integer.parseInt(opt("messages", "5000"));
        int warm = Integer.parseInt(opt("warmup", Integer.toString(Math.max(n / 20, 1000))));
        int rounds = Integer.parseInt(opt("warmup-rounds", "3"));
        for (int r = 0; r < rounds; r++) {
            log("warm-up " + (r + 1) + "/" + rounds + ": " + warm + " rows in one transaction");
            countFromNow();
            commitRows(warm);
            waitAcked(warm);
        }
        log(n + " rows in one transaction");
        countFromNow();
        // Rows are inserted (untimed) in the open transaction, then committed: the clock runs
        // from the commit, as in kafka-orm's relay_throughput.
        long committed = commitRows(n);
        waitAcked(n);
        double secs = (nowUs() - committed) / 1e6;
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("messages", n);
        out.put("seconds", secs);
        out.put("msg_per_s", n / secs);
        return out;
    }

    /** tokio's MissedTickBehavior::Delay, as kafka-orm's bench paces its commits. */
    private static final class Pacer {
        private final long periodNs;
        private long next;

        Pacer(int rate) {
            periodNs = 1_000_000_000L / Math.max(rate, 1);
        }

        void tick() {
            long now = System.nanoTime();
            if (next == 0 || now > next) {
                next = now;
            }
            long wait;
            while ((wait = next - System.nanoTime()) > 0) {
                LockSupport.parkNanos(wait);
            }
            next += periodNs;
        }
    }

    static double percentile(double[] sorted, double p) {
        int rank = (int) Math.ceil(p / 100.0 * sorted.length);
        return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
    }

    private Map<String, Object> latency() throws Exception {
        int rate = Integer.parseInt(opt("rate", "200"));
        int seconds = Integer.parseInt(opt("seconds", "5"));
        keepAckTimes = true;
        Pacer ticks = new Pacer(rate);
        log("warm-up: " + rate + " commits at " + rate + "/s");
        countFromNow();
        for (int i = 0; i < rate; i++) {
            ticks.tick();
            commitRows(1);
        }
        waitAcked(rate);
        int commits = seconds * rate;
        log(commits + " commits at " + rate + "/s");
        long first = seq;
        countFromNow();
        long[] committedAt = new long[commits];
        for (int i = 0; i < commits; i++) {
            ticks.tick();
            committedAt[i] = commitRows(1);
            check();
        }
        waitAcked(commits);
        double[] samples = new double[commits];
        for (int i = 0; i < commits; i++) {
            Long at = ackedAt.get(first + i);
            if (at == null) {
                throw new IllegalStateException("no acknowledgement recorded for seq " + (first + i));
            }
            samples[i] = (at - committedAt[i]) / 1000.0;
        }
        Arrays.sort(samples);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("samples", commits);
        out.put("rate_per_s", rate);
        out.put("seconds", seconds);
        out.put("p50_ms", percentile(samples, 50));
        out.put("p99_ms", percentile(samples, 99));
        out.put("max_ms", samples[samples.length - 1]);
        return out;
    }

    private void close() {
        if (engine != null) {
            try {
                engine.close(); // stops the connector, which drops its slot (slot.drop.on.stop)
            } catch (Exception e) {
                log("closing the engine: " + e);
            }
        }
        if (engineThread != null) {
            engineThread.shutdown();
            try {
                engineThread.awaitTermination(30, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (producer != null) {
            producer.close(java.time.Duration.ofSeconds(10));
        }
        // Never leave a slot behind on the shared server: it would hold WAL forever.
        try (Connection c = DriverManager.getConnection(jdbcUrl, dbUser, dbPassword);
                PreparedStatement st = c.prepareStatement(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ? AND NOT active")) {
            st.setString(1, slot);
            st.execute();
        } catch (SQLException e) {
            log("dropping slot " + slot + ": " + e.getMessage());
        }
        if (db != null) {
            try {
                db.close();
            } catch (SQLException ignored) {
                // closing anyway
            }
        }
    }

    static String json(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof Number || v instanceof Boolean) {
            return v.toString();
        }
        if (v instanceof Map<?, ?> m) {
            List<String> parts = new ArrayList<>();
            for (Map.Entry<?, ?> e : m.entrySet()) {
                parts.add(json(e.getKey().toString()) + ":" + json(e.getValue()));
            }
            return "{" + String.join(",", parts) + "}";
        }
        String s = v.toString().replace("\\", "\\\\").replace("\"", "\\\"");
        return "\"" + s + "\"";
    }

    static Map<String, String> parseArgs(String[] args) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument " + a);
            }
            String name = a.substring(2);
            int eq = name.indexOf('=');
            if (eq >= 0) {
                m.put(name.substring(0, eq), name.substring(eq + 1));
            } else if (i + 1 < args.length) {
                m.put(name, args[++i]);
            } else {
                throw new IllegalArgumentException(a + " needs a value");
            }
        }
        return m;
    }

    public static void main(String[] args) {
        DebeziumPeer peer = null;
        int rc = 0;
        try {
            Map<String, String> opts = parseArgs(args);
            if (!opts.containsKey("bootstrap") && System.getenv("KAFKA_BOOTSTRAP_SERVERS") != null) {
                opts.put("bootstrap", System.getenv("KAFKA_BOOTSTRAP_SERVERS"));
            }
            peer = new DebeziumPeer(opts);
            peer.prepareDatabase();
            peer.startProducer();
            peer.startEngine();
            peer.waitStreaming();
            Map<String, Object> result = switch (peer.mode) {
                case "throughput" -> peer.throughput();
                case "latency" -> peer.latency();
                default -> throw new IllegalArgumentException("unknown --mode " + peer.mode);
            };
            result.put("peer", "debezium");
            result.put("mode", peer.mode);
            result.put("batches", peer.batches.get());
            result.put("records_per_batch", peer.batches.get() == 0 ? 0.0 : (double) peer.batchRecords.get() / peer.batches.get());
            result.put("settings", peer.settings());
            System.out.println(json(result));
            System.out.flush();
        } catch (Throwable t) {
            log("failed: " + t);
            rc = 1;
        } finally {
            if (peer != null) {
                peer.close();
            }
        }
        System.exit(rc);
    }
}
