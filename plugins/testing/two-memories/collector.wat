;; Test collector `two-memories`: a hand-written core module with two
;; linear memories, wrapped into a `wasmtap:collector` component by the
;; tests (`wasmtap_tests::component`). Rust cannot easily give a
;; component two memories; this module can.
;;
;; `collect` grows memory 0 (the one the canonical ABI uses) and memory 1
;; each to 160 pages (10 MiB), trapping if either growth is refused,
;; writes the last byte of each, and reports
;; one gauge, `pages`: the pages of both memories together (320). With a
;; memory cap under 20 MiB the growth must fail, although each memory
;; alone stays under the cap.
;;
;; Memory 0 layout: strings at 16..128, the field record at 256, the
;; descriptor at 512, init's result at 600, collect's result at 640, its
;; sample at 672 and its number at 704; cabi_realloc's heap from 4096.
(module
  (memory (export "memory") 1)
  (memory $second 1)
  (global $heap (mut i32) (i32.const 4096))

  (data (memory 0) (i32.const 16) "two-memories")
  (data (memory 0) (i32.const 32) "0.1.0")
  (data (memory 0) (i32.const 48) "pages")
  (data (memory 0) (i32.const 64) "Wasm pages of both memories after growth")

  (func $grow_to (param $have i32) (param $want i32) (result i32)
    ;; Pages to add to go from $have to $want (0 if there already).
    (select
      (i32.sub (local.get $want) (local.get $have))
      (i32.const 0)
      (i32.lt_u (local.get $have) (local.get $want))))

  (func (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32)
    (result i32)
    (local $at i32)
    ;; A bump allocator: align up, hand out, never free.
    (local.set $at
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $at) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size 0) (i32.const 65536)))
      (then unreachable))
    (local.get $at))

  (func (export "describe") (result i32)
    ;; field { name, kind: gauge, unit: "", help }
    (i32.store (i32.const 256) (i32.const 48))
    (i32.store (i32.const 260) (i32.const 5))
    (i32.store8 (i32.const 264) (i32.const 0))
    (i32.store (i32.const 268) (i32.const 0))
    (i32.store (i32.const 272) (i32.const 0))
    (i32.store (i32.const 276) (i32.const 64))
    (i32.store (i32.const 280) (i32.const 40))
    ;; descriptor { name, version, default-interval-ms, fields }
    (i32.store (i32.const 512) (i32.const 16))
    (i32.store (i32.const 516) (i32.const 12))
    (i32.store (i32.const 520) (i32.const 32))
    (i32.store (i32.const 524) (i32.const 5))
    (i64.store (i32.const 528) (i64.const 1000))
    (i32.store (i32.const 536) (i32.const 256))
    (i32.store (i32.const 540) (i32.const 1))
    (i32.const 512))

  (func (export "init") (param $config i32) (param $len i32) (result i32)
    ;; result<_, string>: ok
    (i32.store8 (i32.const 600) (i32.const 0))
    (i32.const 600))

  (func (export "collect") (result i32)
    ;; A refused growth traps here if the host did not trap already.
    (if (i32.eq (memory.grow 0 (call $grow_to (memory.size 0) (i32.const 160))) (i32.const -1))
      (then unreachable))
    (if (i32.eq
          (memory.grow $second (call $grow_to (memory.size $second) (i32.const 160)))
          (i32.const -1))
      (then unreachable))
    (i32.store8 0 (i32.sub (i32.mul (memory.size 0) (i32.const 65536)) (i32.const 1))
      (i32.const 1))
    (i32.store8 $second
      (i32.sub (i32.mul (memory.size $second) (i32.const 65536)) (i32.const 1))
      (i32.const 1))
    ;; number { field: 0, value: pages of both memories }
    (i32.store (i32.const 704) (i32.const 0))
    (f64.store (i32.const 712)
      (f64.convert_i32_u (i32.add (memory.size 0) (memory.size $second))))
    ;; sample { labels: [], numbers: [number], texts: [] }
    (i32.store (i32.const 672) (i32.const 0))
    (i32.store (i32.const 676) (i32.const 0))
    (i32.store (i32.const 680) (i32.const 704))
    (i32.store (i32.const 684) (i32.const 1))
    (i32.store (i32.const 688) (i32.const 0))
    (i32.store (i32.const 692) (i32.const 0))
    ;; result<list<sample>, string>: ok([sample])
    (i32.store8 (i32.const 640) (i32.const 0))
    (i32.store (i32.const 644) (i32.const 672))
    (i32.store (i32.const 648) (i32.const 1))
    (i32.const 640))
)
