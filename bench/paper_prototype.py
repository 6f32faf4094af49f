#!/usr/bin/env python3
"""BASELINE ONLY - a paper-style prototype, not part of nsdb.

A re-creation of the prototype described in Ichise, Jin, Iida (IEICE IA2017-31) section 4:
Python reading a tcpdump file with dpkt, a query_db and an ns_db with the paper's columns,
glue A records taken from the additional section or, for NS names without glue, from an A
lookup answered within two seconds. The paper used MariaDB through pymysql; this uses the
standard library's sqlite3 (batched inserts) so that it runs anywhere, which if anything
flatters it. `cargo xtask bench` runs it on the benchmark trace to compare with `nsdb learn`.

Usage: paper_prototype.py TRACE.pcap OUT.sqlite
"""
import socket
import sqlite3
import sys

import dpkt


def main():
    pcap_path, db_path = sys.argv[1], sys.argv[2]
    db = sqlite3.connect(db_path)
    db.executescript(
        """
        CREATE TABLE query_db (querytime INTEGER, queryid INTEGER, queryname TEXT);
        CREATE TABLE ns_db (querytime INTEGER, queryid INTEGER, queryname TEXT, res_time INTEGER,
                            zname TEXT, nsttl INTEGER, nsfqdn TEXT, glueAttl INTEGER, glueA TEXT);
        """
    )
    queries = {}  # (client ip, client port, server ip, id) -> (time ms, name)
    pending = {}  # NS name -> list of (row values without glue, deadline ms)
    qrows, nsrows = [], []
    msgs = 0
    with open(pcap_path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            try:
                eth = dpkt.ethernet.Ethernet(buf)
                ip = eth.data
                udp = ip.data
                if not isinstance(udp, dpkt.udp.UDP) or 53 not in (udp.sport, udp.dport):
                    continue
                dns = dpkt.dns.DNS(udp.data)
            except Exception:
                continue
            msgs += 1
            t = int(ts * 1000)
            src, dst = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)
            if not dns.qd:
                continue
            q = dns.qd[0]
            name = q.name if q.type == dpkt.dns.DNS_A else "%s %d" % (q.name, q.type)
            if dns.qr == dpkt.dns.DNS_Q:
                queries[(src, udp.sport, dst, dns.id)] = (t, name)
                qrows.append((t, dns.id, name))
                continue
            key = (dst, udp.dport, src, dns.id)
            if key not in queries:
                continue
            qt, qname = queries.pop(key)
            glue = {}
            for rr in dns.ar:
                if rr.type == dpkt.dns.DNS_A:
                    glue.setdefault(rr.name.lower(), []).append((rr.ttl, socket.inet_ntoa(rr.ip)))
            for rr in list(dns.an) + list(dns.ns):
                if rr.type != dpkt.dns.DNS_NS:
                    continue
                base = (qt, dns.id, qname, t, rr.name, rr.ttl, rr.nsname)
                g = glue.get(rr.nsname.lower())
                if g:
                    for ttl, a in g:
                        nsrows.append(base + (ttl, a))
                else:
                    nsrows.append(base + (None, None))
                    pending.setdefault(rr.nsname.lower(), []).append((base, t + 2000))
            # A glue-less NS name looked up within two seconds supplies its address.
            p = pending.get(q.name.lower())
            if p and q.type == dpkt.dns.DNS_A:
                for rr in dns.an:
                    if rr.type == dpkt.dns.DNS_A:
                        for base, deadline in p:
                            if t <= deadline:
                                nsrows.append(base + (rr.ttl, socket.inet_ntoa(rr.ip)))
            if len(qrows) + len(nsrows) > 50000:
                db.executemany("INSERT INTO query_db VALUES (?,?,?)", qrows)
                db.executemany("INSERT INTO ns_db VALUES (?,?,?,?,?,?,?,?,?)", nsrows)
                db.commit()
                qrows, nsrows = [], []
    db.executemany("INSERT INTO query_db VALUES (?,?,?)", qrows)
    db.executemany("INSERT INTO ns_db VALUES (?,?,?,?,?,?,?,?,?)", nsrows)
    db.commit()
    n = db.execute("SELECT count(DISTINCT glueA) FROM ns_db WHERE glueA IS NOT NULL").fetchone()[0]
    print('{"dns_messages": %d, "distinct_glue_addresses": %d}' % (msgs, n))


if __name__ == "__main__":
    main()
