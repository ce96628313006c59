import { describe, expect, it } from 'vitest';
import {
  acceptLive,
  afterAck,
  hasGap,
  encodeSavedRecovery,
  fadeRemaining,
  parseSavedRecovery,
  planHistory,
  recoveryPoint,
  type HistoryInput,
  type RecoveryState,
} from './history';
import type { ChatIn, History } from './protocol';

const FADE = 5000;
const NOW = Date.parse('2026-11-24T02:00:10.000Z');
const ago = (ms: number) => new Date(NOW - ms).toISOString();

function chat(id: string, offset: number, ageMs: number, epoch = 'e1'): ChatIn {
  return {
    type: 'chat',
    message_id: id,
    channel_id: 'c',
    user_id: 'bob',
    payload: id,
    position: { x: 0, y: 0 },
    offset,
    epoch,
    timestamp: ago(ageMs),
  };
}

function history(messages: ChatIn[], recovered: boolean, epoch = 'e1'): History {
  return { type: 'history', channel_id: 'c', epoch, recovered, messages };
}

const input = (patch: Partial<HistoryInput> & Pick<HistoryInput, 'frame'>): HistoryInput => ({
  before: null,
  requested: false,
  syncOffset: undefined,
  known: new Set<string>(),
  serverNow: NOW,
  fadeMs: FADE,
  ...patch,
});

const shown = (plan: ReturnType<typeof planHistory>) => plan.show.map((e) => [e.frame.message_id, e.remainingMs]);

describe('fadeRemaining', () => {
  it('is what is left of the fade by the server clock, within [0, fade]', () => {
    expect(fadeRemaining(ago(1200), NOW, FADE)).toBe(3800);
    expect(fadeRemaining(ago(9000), NOW, FADE)).toBe(0);
    expect(fadeRemaining(ago(-3000), NOW, FADE)).toBe(FADE);
    expect(fadeRemaining(undefined, NOW, FADE)).toBe(FADE);
    expect(fadeRemaining('not a time', NOW, FADE)).toBe(FADE);
  });
});

describe('planHistory', () => {
  it('a newcomer sees what is still visible to others, with the time it has left', () => {
    const plan = planHistory(input({ frame: history([chat('a', 8, 6000), chat('b', 9, 4000), chat('c', 10, 500)], false), syncOffset: 10 }));
    expect(shown(plan)).toEqual([
      ['b', 1000],
      ['c', 4500],
    ]);
    expect(plan.after).toEqual({ epoch: 'e1', seen: 10 });
    expect(plan.missedSome).toBe(false);
  });

  it('a recovery shows every missed message for the full fade, even old ones', () => {
    const plan = planHistory(
      input({
        frame: history([chat('a', 6, 30_000), chat('b', 7, 100)], true),
        before: { epoch: 'e1', seen: 5 },
        requested: true,
        syncOffset: 7,
      }),
    );
    expect(shown(plan)).toEqual([
      ['a', FADE],
      ['b', FADE],
    ]);
    expect(plan.after).toEqual({ epoch: 'e1', seen: 7 });
    expect(plan.missedSome).toBe(false);
  });

  it('after a reload, messages seen before come back only while still visible, and known ones not at all', () => {
    const plan = planHistory(
      input({
        frame: history([chat('old', 3, 7000), chat('fading', 4, 2000), chat('here', 5, 1000), chat('new', 6, 100)], true),
        before: { epoch: 'e1', seen: 5 },
        requested: true,
        known: new Set(['here']),
      }),
    );
    expect(shown(plan)).toEqual([
      ['fading', 3000],
      ['new', FADE],
    ]);
  });

  it('an incomplete recovery is reported; duplicates within the frame are shown once', () => {
    const plan = planHistory(
      input({
        frame: history([chat('a', 9, 100), chat('a', 9, 100)], false),
        before: { epoch: 'e1', seen: 2 },
        requested: true,
      }),
    );
    expect(shown(plan)).toEqual([['a', FADE]]);
    expect(plan.missedSome).toBe(true);
  });

  it('a new epoch starts over: offsets of the old one mean nothing', () => {
    const plan = planHistory(
      input({
        frame: history([chat('x', 1, 2000, 'e2')], false, 'e2'),
        before: { epoch: 'e1', seen: 40 },
        requested: true,
        syncOffset: 1,
      }),
    );
    expect(shown(plan)).toEqual([['x', 3000]]);
    expect(plan.after).toEqual({ epoch: 'e2', seen: 1 });
    expect(plan.missedSome).toBe(true);
  });

  it('seen follows the user_sync offset when the history is empty', () => {
    const plan = planHistory(input({ frame: history([], false), syncOffset: 12 }));
    expect(plan.after).toEqual({ epoch: 'e1', seen: 12 });
  });
});

describe('acceptLive', () => {
  it('drops an offset already received, moves on with new ones', () => {
    const state = { epoch: 'e1', seen: 5 };
    expect(acceptLive(state, chat('a', 5, 0))).toEqual({ accept: false });
    expect(acceptLive(state, chat('a', 3, 0))).toEqual({ accept: false });
    expect(acceptLive(state, chat('b', 6, 0))).toEqual({ accept: true, state: { epoch: 'e1', seen: 6 } });
  });

  it('a jump leaves a gap that later chats and own acks fill, in any order', () => {
    let state: RecoveryState | null = { epoch: 'e1', seen: 5 };
    const live = (offset: number) => {
      const v = acceptLive(state, chat(`m${offset}`, offset, 0));
      if (v.accept) state = v.state;
      return v.accept;
    };
    expect(live(8)).toBe(true);
    expect(state).toEqual({ epoch: 'e1', seen: 5, ahead: [8] });
    expect(hasGap(state)).toBe(true);
    expect(live(8)).toBe(false);
    expect(live(6)).toBe(true);
    expect(state).toEqual({ epoch: 'e1', seen: 6, ahead: [8] });
    state = afterAck(state, 7, 'e1');
    expect(state).toEqual({ epoch: 'e1', seen: 8 });
    expect(hasGap(state)).toBe(false);
  });

  it('a new epoch or no state yet starts from the frame', () => {
    expect(acceptLive({ epoch: 'e1', seen: 50 }, chat('a', 1, 0, 'e2'))).toEqual({ accept: true, state: { epoch: 'e2', seen: 1 } });
    expect(acceptLive(null, chat('a', 4, 0))).toEqual({ accept: true, state: { epoch: 'e1', seen: 4 } });
  });

  it('frames without offset (an older gateway) always pass and change nothing', () => {
    const { offset: _o, epoch: _e, ...bare } = chat('a', 1, 0);
    const state = { epoch: 'e1', seen: 5 };
    expect(acceptLive(state, bare)).toEqual({ accept: true, state });
  });
});

describe('afterAck', () => {
  it('moves seen only over contiguous offsets of the same epoch', () => {
    const state = { epoch: 'e1', seen: 5 };
    expect(afterAck(state, 6, 'e1')).toEqual({ epoch: 'e1', seen: 6 });
    expect(afterAck(state, 8, 'e1')).toEqual({ epoch: 'e1', seen: 5, ahead: [8] });
    expect(afterAck(state, 5, 'e1')).toBe(state);
    expect(afterAck(state, 6, 'e2')).toBe(state);
    expect(afterAck(state, undefined, undefined)).toBe(state);
    expect(afterAck(null, 6, 'e1')).toBeNull();
  });
});

describe('recoveryPoint', () => {
  it('resumes after the last seen offset, or before the oldest message still on the canvas', () => {
    expect(recoveryPoint(null, [])).toBeNull();
    const state = { epoch: 'e1', seen: 9 };
    expect(recoveryPoint(state, [])).toEqual({ epoch: 'e1', offset: 9 });
    expect(recoveryPoint(state, [{ offset: 7, epoch: 'e1' }, { offset: 8, epoch: 'e1' }, {}])).toEqual({ epoch: 'e1', offset: 6 });
    expect(recoveryPoint(state, [{ offset: 2, epoch: 'old' }])).toEqual({ epoch: 'e1', offset: 9 });
    expect(recoveryPoint({ epoch: 'e1', seen: 0 }, [{ offset: 0, epoch: 'e1' }])).toEqual({ epoch: 'e1', offset: 0 });
  });
});

describe('saved recovery', () => {
  it('round-trips and refuses anything it did not write', () => {
    const text = encodeSavedRecovery({ epoch: 'e1', seen: 9 }, { epoch: 'e1', offset: 6 });
    expect(parseSavedRecovery(text)).toEqual({ state: { epoch: 'e1', seen: 9 }, since: 6 });
    for (const bad of [null, '', 'nope', '[]', '{"epoch":"e1","seen":-1,"since":0}', '{"epoch":"","seen":1,"since":0}', '{"epoch":"e1","seen":1,"since":2}', '{"epoch":"e1","seen":1.5,"since":0}']) {
      expect(parseSavedRecovery(bad)).toBeNull();
    }
  });
});
