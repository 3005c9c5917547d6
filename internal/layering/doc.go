// Package layering holds no code: its test keeps the module's floors
// pointing down (STYLE.md 4 and 32). Over `go list -json ./...` it checks
// that nothing under internal/ imports a component, the supervisor or the
// bench; that relay, gateway and policy never import each other, the
// supervisor or the bench; that the bench talks to no component except over
// the wire; and that the relay's and the gateway's workers share their
// event loop package rather than each typing its own.
package layering
