// A small context menu: buttons in a list at the pointer; Escape, a click elsewhere or a
// scroll closes it. Arrow keys move between its items.
let open = null;

export function closeMenu() {
  if (open) { open.remove(); open = null; }
}

export function showMenu(x, y, items) {
  closeMenu();
  const menu = document.createElement('div');
  menu.className = 'menu';
  menu.setAttribute('role', 'menu');
  for (const { label, action, id } of items) {
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('role', 'menuitem');
    b.dataset.action = id;
    b.textContent = label;
    b.addEventListener('click', () => { closeMenu(); action(); });
    menu.appendChild(b);
  }
  document.body.appendChild(menu);
  // Kept inside the window.
  const r = menu.getBoundingClientRect();
  menu.style.left = `${Math.max(0, Math.min(x, window.innerWidth - r.width - 4))}px`;
  menu.style.top = `${Math.max(0, Math.min(y, window.innerHeight - r.height - 4))}px`;
  open = menu;
  menu.querySelector('button').focus();
  menu.addEventListener('keydown', (e) => {
    const buttons = [...menu.querySelectorAll('button')];
    const i = buttons.indexOf(document.activeElement);
    if (e.key === 'ArrowDown') { e.preventDefault(); buttons[(i + 1) % buttons.length].focus(); }
    if (e.key === 'ArrowUp') { e.preventDefault(); buttons[(i - 1 + buttons.length) % buttons.length].focus(); }
  });
}

document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeMenu(); });
document.addEventListener('mousedown', (e) => { if (open && !open.contains(e.target)) closeMenu(); });
window.addEventListener('blur', closeMenu);
document.addEventListener('scroll', closeMenu, true);
