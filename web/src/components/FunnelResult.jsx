import { Value } from './ui.jsx';
import { fmtInt, fmtMs, fmtPct, num } from '../lib/format.js';

/** One funnel as horizontal bars: users, conversion from previous and first, drop-off, median time. */
export function FunnelBars({ funnel, testid = 'funnel' }) {
  const first = Math.max(num(funnel[0]?.users) || 0, 1);
  return (
    <ol class="funnel" data-testid={testid}>
      {funnel.map((s, i) => (
        <li key={i} class="funnel-step" data-testid="funnel-step" data-step={i + 1} data-key={s.step}>
          <div class="funnel-head">
            <span class="funnel-name">
              <span class="step-no">{i + 1}.</span> {s.step}
            </span>
            <span>
              <Value testid="step-users" value={s.users} text={fmtInt(s.users)} /> users
            </span>
          </div>
          <div class="funnel-track" aria-hidden="true">
            <span class="funnel-bar" style={{ width: `${((num(s.users) || 0) / first) * 100}%` }} />
          </div>
          <dl class="funnel-stats">
            <div>
              <dt>from previous</dt>
              <dd>
                <Value testid="step-conv-prev" value={s.conversion_from_previous} text={fmtPct(s.conversion_from_previous)} />
              </dd>
            </div>
            <div>
              <dt>from first</dt>
              <dd>
                <Value testid="step-conv-first" value={s.conversion_from_first} text={fmtPct(s.conversion_from_first)} />
              </dd>
            </div>
            <div>
              <dt>dropped</dt>
              <dd>
                <Value testid="step-dropoff" value={s.drop_off} text={fmtInt(s.drop_off)} />
              </dd>
            </div>
            <div>
              <dt>median time</dt>
              <dd>
                <Value testid="step-median" value={s.median_ms_to_convert} text={i === 0 ? '–' : fmtMs(s.median_ms_to_convert)} />
              </dd>
            </div>
          </dl>
        </li>
      ))}
    </ol>
  );
}

/** A funnel answer: bars, or with a breakdown a table (one row per value) — the first value's bars too. */
export function FunnelResult({ answer, testid = 'funnel' }) {
  if (answer.funnel) return <FunnelBars funnel={answer.funnel} testid={testid} />;
  const groups = answer.breakdown || [];
  const steps = answer.steps || [];
  return (
    <div class="table-scroll">
      <table class="data funnel-table" data-testid={`table-${testid}`}>
        <thead>
          <tr>
            <th scope="col">Breakdown</th>
            {steps.map((s, i) => (
              <th scope="col" class="num" key={i}>
                {i + 1}. {s}
              </th>
            ))}
            <th scope="col" class="num">
              Conversion
            </th>
          </tr>
        </thead>
        <tbody>
          {groups.map((g, gi) => {
            const last = g.funnel[g.funnel.length - 1];
            return (
              <tr key={gi} data-testid={`row-${testid}`} data-key={g.value === null || g.value === undefined ? '' : String(g.value)}>
                <th scope="row">{g.value === '' || g.value === null || g.value === undefined ? <span class="muted">(none)</span> : String(g.value)}</th>
                {g.funnel.map((s, i) => (
                  <td class="num" key={i}>
                    <span class="cell-bar" style={{ width: `${(num(s.conversion_from_first) || 0) * 100}%` }} aria-hidden="true" />
                    <Value testid="step-users" value={s.users} text={fmtInt(s.users)} />
                    {i > 0 ? (
                      <span class="muted small">
                        {' '}
                        (<Value testid="step-conv-prev" value={s.conversion_from_previous} text={fmtPct(s.conversion_from_previous)} />)
                      </span>
                    ) : null}
                  </td>
                ))}
                <td class="num">
                  <Value testid="step-conv-first" value={last ? last.conversion_from_first : null} text={fmtPct(last ? last.conversion_from_first : null)} />
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {answer.truncated ? <p class="muted small">Only the first 1,000 values are shown.</p> : null}
    </div>
  );
}
