// Package testutil holds the helpers that the tests of several packages
// share: a goroutine-safe log sink, a writer into the test log, free
// loopback ports and sockets, polling with a bound, and a build of the
// daemon from this tree. It is imported only by _test.go files.
package testutil
