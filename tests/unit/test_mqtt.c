/* MQTT round trip against a real mosquitto broker on loopback, including a broker that
 * comes up late (the client reconnects and the queued messages go out). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/mqtt.h"

static const char *BROKER = "/usr/sbin/mosquitto";
static char dir[256];
static pid_t broker_pid;

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static int port_open(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void start_broker(int port) {
    char conf[300];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", dir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port);
    fclose(f);
    broker_pid = fork();
    if (broker_pid == 0) {
        freopen("/dev/null", "w", stderr);
        freopen("/dev/null", "w", stdout);
        execl(BROKER, BROKER, "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !port_open(port); i++) usleep(50000);
    cr_assert(port_open(port), "mosquitto did not start on port %d", port);
}

static void stop_broker(void) {
    if (broker_pid > 0) {
        kill(broker_pid, SIGTERM);
        waitpid(broker_pid, NULL, 0);
        broker_pid = 0;
    }
}

static void setup(void) {
    if (access(BROKER, X_OK) != 0) cr_skip_test("%s is not installed (apt-get install mosquitto)", BROKER);
    snprintf(dir, sizeof dir, "/tmp/bs-mqtt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    mosquitto_lib_init();
}
static void teardown(void) {
    stop_broker();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    system(cmd);
    mosquitto_lib_cleanup();
}
TestSuite(mqtt, .init = setup, .fini = teardown, .timeout = 30);

/* A subscriber collecting payloads. */
typedef struct sub {
    pthread_mutex_t lock;
    int n, subscribed;
    char msgs[64][256];
} sub;

static void sub_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m;
    sub *s = obj;
    pthread_mutex_lock(&s->lock);
    if (s->n < 64) snprintf(s->msgs[s->n++], 256, "%.*s", msg->payloadlen, (const char *)msg->payload);
    pthread_mutex_unlock(&s->lock);
}
static void sub_on_subscribe(struct mosquitto *m, void *obj, int mid, int qc, const int *q) {
    (void)m, (void)mid, (void)qc, (void)q;
    sub *s = obj;
    pthread_mutex_lock(&s->lock);
    s->subscribed = 1;
    pthread_mutex_unlock(&s->lock);
}
static void sub_on_connect(struct mosquitto *m, void *obj, int rc) {
    (void)obj;
    if (rc == 0) mosquitto_subscribe(m, NULL, "birdsong/test/#", 1);
}

static struct mosquitto *subscribe(int port, sub *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    struct mosquitto *m = mosquitto_new("test-sub", true, s);
    mosquitto_connect_callback_set(m, sub_on_connect);
    mosquitto_message_callback_set(m, sub_on_message);
    mosquitto_subscribe_callback_set(m, sub_on_subscribe);
    cr_assert_eq(mosquitto_connect(m, "127.0.0.1", port, 10), MOSQ_ERR_SUCCESS);
    mosquitto_loop_start(m);
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&s->lock);
        int ok = s->subscribed;
        pthread_mutex_unlock(&s->lock);
        if (ok) break;
        usleep(20000);
    }
    return m;
}

static int wait_count(sub *s, int want, int ms) {
    int n = 0;
    for (int t = 0; t < ms; t += 20) {
        pthread_mutex_lock(&s->lock);
        n = s->n;
        pthread_mutex_unlock(&s->lock);
        if (n >= want) break;
        usleep(20000);
    }
    return n;
}

Test(mqtt, detections_round_trip_through_the_broker) {
    int port = free_port();
    start_broker(port);
    sub s;
    struct mosquitto *sm = subscribe(port, &s);
    bs_error err;
    bsd_mqtt_config cfg = {.host = "127.0.0.1", .port = port, .topic = "birdsong/test/detections"};
    bsd_mqtt *m = bsd_mqtt_start(&cfg, &err);
    cr_assert_not_null(m, "%s", err.msg);
    for (int i = 0; i < 5; i++) {
        char payload[128];
        snprintf(payload, sizeof payload, "{\"id\":%d,\"species\":\"Parus_major\"}", i + 1);
        cr_assert_eq(bsd_mqtt_publish(m, payload), 0);
    }
    cr_assert_eq(wait_count(&s, 5, 10000), 5);
    cr_assert_str_eq(s.msgs[0], "{\"id\":1,\"species\":\"Parus_major\"}");
    cr_assert_str_eq(s.msgs[4], "{\"id\":5,\"species\":\"Parus_major\"}");
    bsd_mqtt_stats st = bsd_mqtt_get_stats(m);
    cr_assert_eq(st.sent, 5);
    cr_assert_eq(st.connected, 1);
    bsd_mqtt_stop(m, 2000);
    mosquitto_disconnect(sm);
    mosquitto_loop_stop(sm, true);
    mosquitto_destroy(sm);
}

Test(mqtt, queues_while_the_broker_is_down_and_reconnects) {
    int port = free_port();
    bs_error err;
    bsd_mqtt_config cfg = {.host = "127.0.0.1", .port = port, .topic = "birdsong/test/d", .queue = 3};
    bsd_mqtt *m = bsd_mqtt_start(&cfg, &err);
    cr_assert_not_null(m, "%s", err.msg);
    for (int i = 1; i <= 5; i++) { /* queue of 3: messages 1 and 2 are dropped */
        char payload[32];
        snprintf(payload, sizeof payload, "m%d", i);
        bsd_mqtt_publish(m, payload);
    }
    cr_assert_eq(bsd_mqtt_get_stats(m).dropped, 2);
    cr_assert_eq(bsd_mqtt_get_stats(m).connected, 0);
    start_broker(port);
    sub s;
    struct mosquitto *sm = subscribe(port, &s);
    /* The subscriber may come after the first deliveries; publish one more after it. */
    for (int t = 0; t < 200 && !bsd_mqtt_get_stats(m).connected; t++) usleep(50000);
    cr_assert(bsd_mqtt_get_stats(m).connected, "the client did not reconnect");
    bsd_mqtt_publish(m, "m6");
    cr_assert_geq(wait_count(&s, 1, 10000), 1);
    int seen6 = 0;
    wait_count(&s, 4, 2000);
    pthread_mutex_lock(&s.lock);
    for (int i = 0; i < s.n; i++) {
        cr_assert(strcmp(s.msgs[i], "m1") != 0 && strcmp(s.msgs[i], "m2") != 0);
        seen6 |= strcmp(s.msgs[i], "m6") == 0;
    }
    pthread_mutex_unlock(&s.lock);
    cr_assert(seen6);
    cr_assert_geq(bsd_mqtt_get_stats(m).sent, 4);
    bsd_mqtt_stop(m, 2000);
    mosquitto_disconnect(sm);
    mosquitto_loop_stop(sm, true);
    mosquitto_destroy(sm);
}

Test(mqtt, bad_settings_are_refused) {
    bs_error err;
    bsd_mqtt_config cfg = {.topic = "birdsong/#"};
    cr_assert_null(bsd_mqtt_start(&cfg, &err));
    cr_assert(strstr(err.msg, "wildcard") != NULL, "%s", err.msg);
    bsd_mqtt_config c2 = {.qos = 3};
    cr_assert_null(bsd_mqtt_start(&c2, &err));
    cr_assert(strstr(err.msg, "qos 3") != NULL, "%s", err.msg);
}
