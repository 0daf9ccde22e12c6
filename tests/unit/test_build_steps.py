"""Reading which step ``docker build`` is on from its output (classic builder and BuildKit)."""

from ops.deploy.build_steps import DETAIL_LIMIT, BuildSteps

CLASSIC = (b"Sending build context to Docker daemon  3.072kB\r\r\n"
           b"Step 1/3 : FROM ops-sandbox/debian:bookworm\r\n ---> 1f2e3d4c5b6a\r\n"
           b"Step 2/3 : RUN npm ci   --omit=dev\r\n ---> Running in 0a1b2c3d\r\nadded 12 packages\r\n"
           b"Step 3/3 : CMD [\"node\", \"server.js\"]\r\nSuccessfully built 9f8e7d6c5b4a\r\n")


def test_classic_builder_steps_are_read_in_order_with_their_instruction():
    steps = BuildSteps()
    seen = []
    for i in range(0, len(CLASSIC), 7):  # chunks cut lines (and \r\n pairs) anywhere
        if steps.feed(CLASSIC[i:i + 7]):
            seen.append(steps.current)
    assert seen == ["step 1/3: FROM ops-sandbox/debian:bookworm", "step 2/3: RUN npm ci --omit=dev",
                    'step 3/3: CMD ["node", "server.js"]']
    assert steps.steps_seen == 3
    assert steps.last_lines(2) == ["added 12 packages", "Successfully built 9f8e7d6c5b4a"]


def test_buildkit_plain_and_terminal_views_name_the_step_without_stage_or_timer():
    steps = BuildSteps()
    assert steps.feed(b"#7 [builder 3/6] RUN npm run build\n")
    assert steps.current == "step 3/6: RUN npm run build"
    assert steps.feed(b"\x1b[1A\x1b[2K => [runner 5/6] COPY --from=builder /app/.next ./.next   12.3s\n")
    assert steps.current == "step 5/6: COPY --from=builder /app/.next ./.next"
    assert not steps.feed(b"#7 12.40 Compiled successfully\n")  # output of a step is not a step


def test_a_long_instruction_is_cut_and_a_line_never_ending_is_dropped():
    steps = BuildSteps()
    steps.feed(b"Step 1/1 : RUN " + b"x" * 200 + b"\n")
    assert len(steps.current) == len("step 1/1: ") + DETAIL_LIMIT and steps.current.endswith("...")
    steps.feed(b"y" * 5000)
    assert not steps.feed(b"\n") and steps.last_lines(1) != ["y" * 5000]


def test_a_failed_build_leaves_dockers_own_error_as_the_last_line():
    steps = BuildSteps()
    steps.feed(b"Step 2/3 : RUN npm ci\r\nnpm ERR! code ECONNREFUSED\r\n"
               b"The command '/bin/sh -c npm ci' returned a non-zero code: 1\r\n")
    assert steps.last_lines(1) == ["The command '/bin/sh -c npm ci' returned a non-zero code: 1"]
