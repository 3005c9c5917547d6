//go:build !linux

package udpbatch

import "net"

type sysConn struct{ v6 bool }

func (s *sysConn) init(uc *net.UDPConn, batch int, v6 bool) { s.v6 = v6 }
func (s *sysConn) mode() Mode                               { return ModeSingle }
func (s *sysConn) read(uc *net.UDPConn, msgs []Message) (int, error) {
	return readSingle(uc, msgs)
}
func (s *sysConn) write(uc *net.UDPConn, msgs []Message) (int, error) {
	return writeSingle(uc, s.v6, msgs)
}
