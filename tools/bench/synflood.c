/* A bounded SYN generator for make bench-xdp (not a test, not a tool for anywhere else): sends COUNT TCP SYNs at
 * most PPS per second to DST:PORT from N_SRC source addresses counting up from SRC (raw socket, IP_HDRINCL, valid
 * checksums), then prints what it sent. It refuses destinations outside 10.0.0.0/8: the bench only floods addresses
 * inside the network namespaces it creates.
 *   synflood SRC N_SRC DST PORT COUNT PPS */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint16_t csum(const void *p, size_t n, uint32_t sum)
{
    const uint8_t *b = p;
    for (; n > 1; n -= 2, b += 2)
        sum += (uint32_t)(b[0] << 8 | b[1]);
    if (n)
        sum += (uint32_t)b[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons((uint16_t)~sum);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: synflood SRC N_SRC DST PORT COUNT PPS\n");
        return 2;
    }
    struct in_addr src, dst;
    long n_src = strtol(argv[2], NULL, 10), port = strtol(argv[4], NULL, 10);
    long long count = strtoll(argv[5], NULL, 10), pps = strtoll(argv[6], NULL, 10);
    if (inet_pton(AF_INET, argv[1], &src) != 1 || inet_pton(AF_INET, argv[3], &dst) != 1 || n_src < 1 || n_src > 65536 ||
        port < 1 || port > 65535 || count < 1 || count > 100000000 || pps < 1 || pps > 10000000) {
        fprintf(stderr, "synflood: bad arguments\n");
        return 2;
    }
    if ((ntohl(dst.s_addr) >> 24) != 10) {
        fprintf(stderr, "synflood: %s is outside 10.0.0.0/8; refusing\n", argv[3]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (fd == -1) {
        perror("synflood: socket (needs root)");
        return 1;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = dst};
    uint8_t pkt[40];
    struct iphdr *ip = (struct iphdr *)pkt;
    struct tcphdr *t = (struct tcphdr *)(pkt + 20);
    long long sent = 0, failed = 0;
    uint32_t seq = 0x12345678;
    double start = now_s();
    const long long batch = pps / 1000 > 0 ? pps / 1000 : 1; /* paced per millisecond */
    while (sent + failed < count) {
        for (long long i = 0; i < batch && sent + failed < count; i++) {
            uint32_t s = htonl(ntohl(src.s_addr) + (uint32_t)((sent + failed) % n_src));
            memset(pkt, 0, sizeof(pkt));
            ip->version = 4;
            ip->ihl = 5;
            ip->ttl = 64;
            ip->protocol = IPPROTO_TCP;
            ip->tot_len = htons(sizeof(pkt));
            ip->saddr = s;
            ip->daddr = dst.s_addr;
            ip->check = csum(ip, 20, 0);
            seq = seq * 1103515245u + 12345u;
            t->source = htons((uint16_t)(1024 + (seq >> 16) % 60000));
            t->dest = htons((uint16_t)port);
            t->seq = htonl(seq);
            t->doff = 5;
            t->syn = 1;
            t->window = htons(64240);
            /* pseudo-header: src, dst, zero, protocol, TCP length */
            uint8_t ph[12];
            memcpy(ph, &ip->saddr, 4);
            memcpy(ph + 4, &ip->daddr, 4);
            ph[8] = 0, ph[9] = IPPROTO_TCP, ph[10] = 0, ph[11] = 20;
            uint32_t sum = 0;
            for (int k = 0; k < 12; k += 2)
                sum += (uint32_t)(ph[k] << 8 | ph[k + 1]);
            t->check = csum(t, 20, sum);
            if (sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)sizeof(pkt))
                sent++;
            else
                failed++;
        }
        /* pace: never ahead of pps */
        double ahead = (double)(sent + failed) / (double)pps - (now_s() - start);
        if (ahead > 0)
            usleep((useconds_t)(ahead * 1e6));
    }
    double secs = now_s() - start;
    printf("synflood: sent %lld SYNs (%lld failed) in %.2f s (%.0f/s) from %ld sources\n", sent, failed, secs, sent / secs, n_src);
    close(fd);
    return 0;
}
