;; Writes a line to stdout and a complaint to stderr, then exits with code 3: what a
;; program that gives up looks like. Its output is still its result.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "partial\n")
  (data (i32.const 48) "cannot find the second number\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 32))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))
    (i32.store (i32.const 8) (i32.const 48))
    (i32.store (i32.const 12) (i32.const 30))
    (drop (call $fd_write (i32.const 2) (i32.const 8) (i32.const 1) (i32.const 24)))
    (call $proc_exit (i32.const 3))))
