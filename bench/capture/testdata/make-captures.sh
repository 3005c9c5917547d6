#!/usr/bin/env bash
# Re-creates the captures in this folder (root: tcpdump and tshark capture on
# lo). Needs ffmpeg (with libopus), tcpdump and tshark from Debian 12.
# Every capture is a real ffmpeg RTP sender on loopback; the tests compare
# what bench's reader finds with what tshark reports for the same file.
set -euo pipefail
cd "$(dirname "$0")"
tone() { # frequency rate duration
	echo "sine=frequency=$1:sample_rate=$2:duration=$3${4:+:samples_per_frame=$4}"
}
run_capture() { # pid-of-capturer, then the ffmpeg command
	local cap=$1; shift
	sleep 1.5
	"$@"
	sleep 0.5
	kill -INT "$cap"; wait "$cap" || true
}
FF=(ffmpeg -hide_banner -loglevel error -re -f lavfi)

# G.711 PCMU, IPv4, tcpdump on lo: Ethernet link type, pcap, 20 ms packets.
tcpdump -i lo -U -w pcmu-lo.pcap 'udp and portrange 41000-41001' 2>/dev/null &
run_capture $! "${FF[@]}" -i "$(tone 440 8000 1 160)" -c:a pcm_mulaw -ssrc 305419896 -payload_type 0 \
	-f rtp rtp://127.0.0.1:41000 >/dev/null

# Opus (libopus, 24 kbit/s, 20 ms frames), IPv6, tshark on lo: pcapng.
tshark -q -i lo -F pcapng -w /tmp/opus-lo6.$$.pcapng -f 'udp and portrange 41002-41003' 2>/dev/null &
run_capture $! "${FF[@]}" -i "$(tone 660 48000 1)" -c:a libopus -b:a 24k -frame_duration 20 -application voip \
	-ssrc 287454020 -payload_type 111 -f rtp "rtp://[::1]:41002" >/dev/null
mv /tmp/opus-lo6.$$.pcapng opus-lo6.pcapng

# PCMU on -i any: Linux cooked capture v2 (tcpdump 4.99's default for any).
tcpdump -i any -U -w pcmu-any-sll2.pcap 'udp and portrange 41004-41005' 2>/dev/null &
run_capture $! "${FF[@]}" -i "$(tone 350 8000 0.6 160)" -c:a pcm_mulaw -ssrc 19088743 -payload_type 0 \
	-f rtp rtp://127.0.0.1:41004 >/dev/null

# The same with Linux cooked capture v1 (-y LINUX_SLL).
tcpdump -i any -y LINUX_SLL -U -w pcmu-any-sll.pcap 'udp and portrange 41006-41007' 2>/dev/null &
run_capture $! "${FF[@]}" -i "$(tone 350 8000 0.6 160)" -c:a pcm_mulaw -ssrc 19088744 -payload_type 0 \
	-f rtp rtp://127.0.0.1:41006 >/dev/null
chmod 644 ./*.pcap ./*.pcapng
